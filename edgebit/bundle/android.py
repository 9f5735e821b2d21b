"""One runtime of an arm64 bundle laid out for an Android app (``examples/android/``).

An app may execute code only from its ``nativeLibraryDir`` (SELinux: files in the app's data directory are not
executable), and the package manager extracts only ``lib*.so`` names from ``jniLibs/<abi>/`` into it. So every ELF
file the runner needs (the loader, the runner, the runtime's libraries and model library, the loader's glibc and
libstdc++) ships under a ``lib*.so`` name, and the rest (model weights, ``model.conf``, reference vectors,
``tokenizer.json``) ships as assets that the app copies into its files directory::

    <out>/jniLibs/arm64-v8a/libedgebit_loader.so            loader/ld-linux-aarch64.so.1
    <out>/jniLibs/arm64-v8a/libedgebit_runner.so            runtimes/<rt>/bin/edgebit-runner
    <out>/jniLibs/arm64-v8a/libedgebit_libc_so_6.so         loader/libc.so.6 (and every other ELF: one name each)
    <out>/assets/edgebit/app.json                           loader, runner, runtime and the paths below
    <out>/assets/edgebit/links.txt                          "LINK RENAMED" lines (LINK relative to the copy)
    <out>/assets/edgebit/runtime/...                        the runtime's other files (model.conf, weights.params)
    <out>/assets/edgebit/reference/input_ids.npy, logits.npy, tokenizer.json

At run time the app copies ``assets/edgebit`` to ``<filesDir>/edgebit`` and creates each link of ``links.txt``
there as a symlink to ``<nativeLibraryDir>/<RENAMED>``: ``links/<soname>`` for every library (so
``--library-path <filesDir>/edgebit/links`` resolves every DT_NEEDED), and ``runtime/<path>`` for each ELF file the
runner opens by path inside its directory (TVM's ``model.so``, ONNX Runtime's custom-op library). A symlink is
only a name: the kernel maps the target, which lies in ``nativeLibraryDir``, so every executable mapping comes from
there. Then it starts ``<nativeLibraryDir>/libedgebit_loader.so --library-path <filesDir>/edgebit/links
<nativeLibraryDir>/libedgebit_runner.so <filesDir>/edgebit/runtime logits IDS.npy OUT.npy``.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from edgebit.bundle import Bundle
from edgebit.bundle.layout import LIB_DIR, LOADER_DIR, REFERENCE_INPUTS, REFERENCE_LOGITS, RUNNER, TOKENIZER, runtime_dir
from edgebit.errors import EdgebitError
from edgebit.toolchain.c_runtime import is_elf

ABI = "arm64-v8a"
DEBIAN_ARCH = "arm64"
JNI_DIR = f"jniLibs/{ABI}"
ASSETS_DIR = "assets/edgebit"
APP_JSON = "app.json"
LINKS_TXT = "links.txt"
LINKS_DIR = "links"  # inside the app's copy of the assets: links/<soname> -> nativeLibraryDir/<renamed>
RUNTIME_ASSETS = "runtime"  # the runner's directory inside the copy
LOADER_NAME = "libedgebit_loader.so"
RUNNER_NAME = "libedgebit_runner.so"


class AndroidLayoutError(EdgebitError):
    """A bundle that cannot be laid out for an Android app."""


def native_name(file_name: str) -> str:
    """``libc.so.6`` -> ``libedgebit_libc_so_6.so``: a name the package manager extracts into nativeLibraryDir."""
    return "libedgebit_" + re.sub(r"[^A-Za-z0-9]", "_", file_name) + ".so"


@dataclass(frozen=True)
class NativeFile:
    bundle_path: str  # relative to the bundle
    name: str  # lib*.so name in jniLibs/arm64-v8a/ (and so in nativeLibraryDir)


@dataclass
class AndroidLayout:
    bundle: Bundle
    runtime: str
    loader: str  # renamed loader (in nativeLibraryDir)
    runner: str  # renamed runner
    native: list[NativeFile] = field(default_factory=list)
    assets: dict[str, str] = field(default_factory=dict)  # path under assets/edgebit -> path in the bundle
    links: dict[str, str] = field(default_factory=dict)  # link path under the app's copy -> renamed native file

    @property
    def sonames(self) -> dict[str, str]:
        """soname -> renamed file: what ``--library-path links`` resolves."""
        prefix = f"{LINKS_DIR}/"
        return {k[len(prefix):]: v for k, v in self.links.items() if k.startswith(prefix)}

    def app_json(self) -> dict:
        manifest = self.bundle.manifest
        return {"runtime": self.runtime, "loader": self.loader, "runner": self.runner, "library_path": LINKS_DIR,
                "runtime_dir": RUNTIME_ASSETS, "links": LINKS_TXT, "target": manifest.target.name,
                "bundle_loader": manifest.target.loader, "family": manifest.model.family,
                "vocab_size": manifest.model.vocab_size, "max_seq_len": manifest.model.max_seq_len,
                "reference_inputs": REFERENCE_INPUTS if REFERENCE_INPUTS in self.assets else None,
                "reference_logits": REFERENCE_LOGITS if REFERENCE_LOGITS in self.assets else None,
                "rounding_noise": manifest.model.rounding_noise,
                "tokenizer": TOKENIZER if TOKENIZER in self.assets else None}

    def links_text(self) -> str:
        return "".join(f"{link} {name}\n" for link, name in sorted(self.links.items()))


def android_layout(bundle: Bundle, runtime: str | None = None) -> AndroidLayout:
    """Map one runtime of ``bundle`` (an arm64 bundle) onto an app's nativeLibraryDir, assets and links."""
    if bundle.debian_arch != DEBIAN_ARCH:
        raise AndroidLayoutError(f"{bundle.root} was built for {bundle.target} ({bundle.debian_arch}); an Android app "
                                 "needs an arm64 bundle: edgebit export MODEL -t android-arm64 -o OUT")
    runtime = bundle.check_runtime(runtime)
    files = sorted(bundle.manifest.files)
    loader_path = f"{LOADER_DIR}/{bundle.manifest.target.loader}"
    rt_prefix = f"{runtime_dir(runtime)}/"
    runner_path = rt_prefix + RUNNER
    for required in (loader_path, runner_path):
        if required not in bundle.manifest.files:
            raise AndroidLayoutError(f"{bundle.root}: {required} is missing; export the bundle again")
    layout = AndroidLayout(bundle, runtime, LOADER_NAME, RUNNER_NAME)
    taken: dict[str, str] = {}

    def add_native(path: str, name: str) -> str:
        if name in taken and taken[name] != path:
            raise AndroidLayoutError(f"{bundle.root}: {path} and {taken[name]} both map to {name}; rename one")
        if name not in taken:
            taken[name] = path
            layout.native.append(NativeFile(path, name))
        return name

    def add_link(link: str, name: str) -> None:
        layout.links.setdefault(link, name)  # the first one wins: runtime lib/ before loader/, as --library-path

    add_native(loader_path, LOADER_NAME)
    add_native(runner_path, RUNNER_NAME)
    rt_lib = f"{rt_prefix}{LIB_DIR}/"
    # Search order of the bundle's own --library-path: the runtime's lib/ first, then loader/.
    libraries = [p for p in files if p.startswith(rt_lib) and "/" not in p[len(rt_lib):]] + \
                [p for p in files if p.startswith(f"{LOADER_DIR}/") and "/" not in p[len(LOADER_DIR) + 1:]]
    for path in libraries:
        if not is_elf(bundle.file(path)):
            continue
        soname = path.rsplit("/", 1)[1]
        name = LOADER_NAME if path == loader_path else native_name(soname)
        if soname in layout.sonames:
            continue  # shadowed by the runtime's own copy, as with --library-path
        add_link(f"{LINKS_DIR}/{soname}", add_native(path, name))
    for path in files:
        if not path.startswith(rt_prefix) or path == runner_path:
            continue
        inner = path[len(rt_prefix):]
        if is_elf(bundle.file(path)):  # opened by path inside the runner's directory (model.so, custom ops)
            existing = next((n.name for n in layout.native if n.bundle_path == path), None)
            add_link(f"{RUNTIME_ASSETS}/{inner}", existing or add_native(path, native_name(inner)))
        else:
            layout.assets[f"{RUNTIME_ASSETS}/{inner}"] = path
    for shared in (REFERENCE_INPUTS, REFERENCE_LOGITS, TOKENIZER):
        if shared in bundle.manifest.files:
            layout.assets[shared] = shared
    return layout


def write_android_layout(layout: AndroidLayout, out: Path) -> list[Path]:
    """Write ``<out>/jniLibs/arm64-v8a/`` and ``<out>/assets/edgebit/`` (replacing what an earlier run wrote there);
    returns the files written."""
    out = Path(out)
    jni, assets = out / JNI_DIR, out / ASSETS_DIR
    for folder in (jni, assets):
        if folder.is_dir():
            shutil.rmtree(folder)
        elif folder.exists():
            raise AndroidLayoutError(f"{folder} exists and is not a directory; remove it")
    written = []
    for native in layout.native:
        target = jni / native.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(layout.bundle.file(native.bundle_path), target)
        target.chmod(0o755)  # as the package manager extracts them
        written.append(target)
    for relative, source in sorted(layout.assets.items()):
        target = assets / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(layout.bundle.file(source), target)
        target.chmod(0o644)
        written.append(target)
    assets.mkdir(parents=True, exist_ok=True)
    (assets / LINKS_TXT).write_text(layout.links_text())
    (assets / APP_JSON).write_text(json.dumps(layout.app_json(), indent=2, sort_keys=True) + "\n")
    return written + [assets / LINKS_TXT, assets / APP_JSON]
