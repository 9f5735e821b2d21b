"""Things edgebit fetches once and caches outside the repository (``$EDGEBIT_CACHE`` or ``~/.cache/edgebit``):
Debian packages downloaded through a private apt state (the system's apt sources are never touched), unpacked into
a qemu-user 10 installation and per-architecture device sysroots.

Why a private apt state: qemu-user >= 8 comes from bookworm-backports (Debian 12's 7.2 crashes on the RVV code TVM
emits), and sysroots need packages of foreign architectures (arm64, riscv64) without ``dpkg --add-architecture``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from edgebit.errors import EdgebitError

DEBIAN_MIRROR = "http://deb.debian.org/debian"
QEMU_SUITE = "bookworm-backports"
EMULATORS = ("qemu-aarch64", "qemu-riscv64")
SYSROOT_SUITE = "bookworm"
# Debian's "-cross" packages (architecture all) carry a foreign architecture's runtime libraries under
# /usr/<triple>/: the same libraries a device of that architecture has, from the host's own release.
SYSROOT_PACKAGES = ("libc6-{arch}-cross", "libstdc++6-{arch}-cross", "libgcc-s1-{arch}-cross",
                    "libatomic1-{arch}-cross")


def cache_dir() -> Path:
    root = Path(os.environ.get("EDGEBIT_CACHE") or Path.home() / ".cache" / "edgebit")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _apt_options(state: Path, suite: str, arch: str) -> list[str]:
    return ["-o", f"Dir::Etc::SourceList={state / 'sources.list'}", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={state / 'lists'}", "-o", f"Dir::Cache={state / 'cache'}",
            "-o", f"APT::Architecture={arch}", "-o", f"APT::Architectures={arch}", "-o", "Debug::NoLocking=1"]


def download_debs(suite: str, arch: str, packages: tuple[str, ...], destination: Path) -> list[Path]:
    """Download ``packages`` of ``suite``/``arch`` as .deb files into ``destination`` (no install)."""
    if shutil.which("apt-get") is None:
        raise EdgebitError("apt-get is not available; edgebit fetches qemu and sysroots from Debian packages")
    state = cache_dir() / "apt" / f"{suite}-{arch}"
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "sources.list").write_text(f"deb [arch={arch}] {DEBIAN_MIRROR} {suite} main\n")
    options = _apt_options(state, suite, arch)
    if not any((state / "lists").glob("*Packages*")):
        _run(["apt-get", "-qq", *options, "update"], f"apt-get update for {suite}/{arch}")
    destination.mkdir(parents=True, exist_ok=True)
    _run(["apt-get", "-qq", *options, "download", *packages], f"downloading {', '.join(packages)}", cwd=destination)
    return sorted(destination.glob("*.deb"))


WHEEL_PLATFORMS = {"arm64": "manylinux_2_28_aarch64"}  # Debian architecture -> PyPI platform tag of its wheels


def extract_from_wheels(requirements: list[str], debian_arch: str, pick: Callable[[str], str | None],
                        destination: Path) -> None:
    """Download the ``debian_arch`` wheels of ``requirements`` (pip, no install) and write each member for which
    ``pick(member)`` returns a file name into ``destination`` under that name."""
    import zipfile

    with tempfile.TemporaryDirectory() as tmp:
        _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
              "3.11", "--platform", WHEEL_PLATFORMS[debian_arch], "-d", tmp, *requirements],
             f"downloading the {debian_arch} wheels of {', '.join(requirements)}")
        for wheel in sorted(Path(tmp).glob("*.whl")):
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.namelist():
                    name = pick(member)
                    if name:
                        (destination / name).write_bytes(archive.read(member))


def _run(argv: list[str], what: str, cwd: Path | None = None) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgebitError(f"{what} failed: {detail}")


def _unpack_into(debs: list[Path], root: Path) -> None:
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(root)], f"unpacking {deb.name}")


def cached_build(final: Path, build) -> Path:
    """Run ``build(staging_dir)`` once; the result appears at ``final`` atomically."""
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        build(staging)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def qemu_binary(name: str) -> Path:
    """Path of qemu-user 10 binary ``name`` (e.g. ``qemu-aarch64``), fetched from bookworm-backports on first use."""
    def build(staging: Path) -> None:
        with tempfile.TemporaryDirectory() as debs:
            _unpack_into(download_debs(QEMU_SUITE, "amd64", ("qemu-user",), Path(debs)), staging)
        for binary in (staging / "usr" / "bin").iterdir():  # ~30 emulators; keep the ones edgebit targets
            if binary.name not in EMULATORS:
                binary.unlink()

    root = cached_build(cache_dir() / "qemu-user-10", build)
    path = root / "usr" / "bin" / name
    if not path.is_file():
        raise EdgebitError(f"{path}: qemu-user has no {name}; remove {root} and try again")
    return path


def sysroot(debian_arch: str, triple: str) -> Path:
    """A device root for ``debian_arch`` (C and C++ runtime libraries), for ``qemu -L``, from Debian packages."""
    packages = tuple(name.format(arch=debian_arch) for name in SYSROOT_PACKAGES)

    def build(staging: Path) -> None:
        with tempfile.TemporaryDirectory() as debs:
            _unpack_into(download_debs(SYSROOT_SUITE, "amd64", packages, Path(debs)), staging)

    root = cached_build(cache_dir() / "sysroots" / debian_arch, build) / "usr" / triple
    if not (root / "lib").is_dir():
        raise EdgebitError(f"{root}: the sysroot for {debian_arch} is incomplete; remove it and try again")
    return root
