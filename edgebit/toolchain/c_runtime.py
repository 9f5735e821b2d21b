"""The C and C++ runtime a bundle carries, so its runners need nothing from the device but a Linux kernel.

A runner is started through the bundle's own dynamic loader (``loader/ld-linux-*.so.*  --library-path ...
bin/edgebit-runner``), with glibc, libm, libstdc++ and libgcc_s beside it, taken from the same Debian cross packages
as the qemu sysroots (edgebit.toolchain.provision.sysroot). The same bundle then runs on Raspberry Pi OS, in an
Android shell (no glibc there) and on a bare busybox board, and qemu-user needs no ``-L`` sysroot.

Which libraries: the base set below plus every library the bundle's binaries need (their ``DT_NEEDED`` closure,
read with ``readelf``) that the sysroot has.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

from edgebit.errors import EdgebitError
from edgebit.targets import Target
from edgebit.toolchain import provision
from edgebit.toolchain.sanitize import sanitizer_runtime_files

BASE_LIBRARIES = ("libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libpthread.so.0", "libdl.so.2",
                  "librt.so.1")
# glibc tunables the runner is started with: Android's seccomp filter (apps) kills the rseq syscall.
RUNNER_ENVIRONMENT = {"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}


def _sysroot_lib(target: Target) -> Path:
    return provision.sysroot(target.debian_arch, target.triple) / "lib"


def loader_name(target: Target) -> str:
    """The file name of ``target``'s dynamic loader (``ld-linux-aarch64.so.1``, ...)."""
    found = sorted(p.name for p in _sysroot_lib(target).glob("ld-linux*.so*"))
    if not found:
        raise EdgebitError(f"the {target.debian_arch} sysroot has no dynamic loader; remove "
                           f"{provision.cache_dir() / 'sysroots' / target.debian_arch} and try again")
    return found[0]


@cache
def needed_libraries(binary: Path) -> tuple[str, ...]:
    """The ``DT_NEEDED`` entries of an ELF file (any architecture); read once per file and process."""
    readelf = shutil.which("readelf")
    if readelf is None:
        raise EdgebitError("readelf is not installed; install binutils (apt-get install binutils)")
    result = subprocess.run([readelf, "-d", str(binary)], capture_output=True, text=True)
    return tuple(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", result.stdout))


def c_runtime_files(target: Target, binaries: list[Path]) -> dict[str, Path]:
    """{file name: host file} of the loader and the C/C++ runtime libraries ``binaries`` need on ``target``."""
    lib = _sysroot_lib(target)
    chosen = {loader_name(target)}
    pending = [*BASE_LIBRARIES, *(name for binary in binaries for name in needed_libraries(binary))]
    while pending:
        name = pending.pop()
        if name in chosen or not (lib / name).exists():
            continue  # provided by the bundle's runtime libraries, or not a system library
        chosen.add(name)
        pending.extend(needed_libraries((lib / name).resolve()))
    return {**{name: (lib / name).resolve() for name in sorted(chosen)}, **sanitizer_runtime_files(target)}


def is_elf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"\x7fELF"


def elf_files(directory: Path) -> list[Path]:
    """Every ELF file under ``directory`` (runner, runtime libraries, a compiled model): what the loader maps."""
    return [p for p in sorted(directory.rglob("*")) if p.is_file() and is_elf(p)]


def check_self_contained(runtime_dir: Path, loader_dir: Path) -> None:
    """Every library an ELF file of ``runtime_dir`` needs is in its ``lib/`` or in ``loader_dir`` (else a clear
    error: the bundle would fail on a device that lacks the library)."""
    provided = {p.name for d in (runtime_dir / "lib", loader_dir) if d.is_dir() for p in d.iterdir()}
    for path in elf_files(runtime_dir):
        missing = sorted(set(needed_libraries(path)) - provided)
        if missing:
            raise EdgebitError(f"{path.relative_to(runtime_dir.parent.parent)} needs {', '.join(missing)}, "
                               "which the bundle does not carry; report this as an edgebit bug")


def install_c_runtime(target: Target, runtime_root: Path) -> None:
    """Give a runtime directory built outside a bundle (tests, tools) its own ``loader/``, as a bundle has."""
    from edgebit.bundle.layout import LOADER_DIR

    loader_dir = runtime_root / LOADER_DIR
    loader_dir.mkdir(exist_ok=True)
    for name, source in c_runtime_files(target, elf_files(runtime_root)).items():
        if not (loader_dir / name).exists():
            shutil.copy2(source, loader_dir / name)


def runner_argv(loader_dir: str, loader: str, runtime_root: str) -> list[str]:
    """How every runner starts (device paths): ``[loader, --library-path, lib:loader_dir, bin/edgebit-runner]``,
    so nothing is taken from the device's own system."""
    from edgebit.bundle.layout import LIB_DIR, RUNNER

    return [f"{loader_dir}/{loader}", "--library-path", f"{runtime_root}/{LIB_DIR}:{loader_dir}",
            f"{runtime_root}/{RUNNER}"]


def runner_command(target: Target, root: str) -> list[str]:
    """:func:`runner_argv` for a runtime directory at device path ``root`` that holds its own ``loader/``
    (:func:`install_c_runtime`)."""
    from edgebit.bundle.layout import LOADER_DIR

    return runner_argv(f"{root}/{LOADER_DIR}", loader_name(target), root)
