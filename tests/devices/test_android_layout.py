"""The Android app layout of a bundle (edgebit.bundle.android, ``edgebit android-layout``) and
``examples/android/deploy_like_app.py``, which deploys that layout over adb as the app would.

Fast checks use small fake bundles. The slow ones export the demo model for arm64 once (~40 s): the layout's
properties on real ELF files (``readelf -d``), the layout run as the app runs it under qemu-user, and the whole
deploy against the adbd of an emulated arm64 board (``edgebit vm start arm64``; first use fetches it from Debian).
The app itself (examples/android/) is not built here: there is no Android SDK or NDK on CI machines.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from adb_helpers import private_adb_env

from cli_helpers import EDGEBIT, assert_user_error, run_cli
from edgebit.bundle import Bundle, BundleWriter
from edgebit.bundle.android import (APP_JSON, ASSETS_DIR, JNI_DIR, LINKS_DIR, LINKS_TXT, LOADER_NAME, RUNNER_NAME,
                                    RUNTIME_ASSETS, AndroidLayoutError, android_layout, is_elf, native_name,
                                    write_android_layout)
from edgebit.bundle.layout import LOADER_DIR, REFERENCE_INPUTS, REFERENCE_LOGITS, TOKENIZER
from edgebit.toolchain.c_runtime import RUNNER_ENVIRONMENT
from edgebit.validate.agreement import compare_logits

DEPLOY = Path(__file__).resolve().parents[2] / "examples" / "android" / "deploy_like_app.py"
COMMAND_TIMEOUT = 900
FAKE_ELF = b"\x7fELF\x02\x01\x01" + bytes(9)


def _target(arch: str) -> dict:
    if arch == "arm64":
        return {"name": "arm64", "triple": "aarch64-linux-gnu", "debian_arch": "arm64", "loader": "ld-linux-aarch64.so.1"}
    return {"name": "x86_64", "triple": "x86_64-linux-gnu", "debian_arch": "amd64", "loader": "ld-linux-x86-64.so.2"}


def fake_bundle(root: Path, arch: str = "arm64") -> Bundle:
    loader = _target(arch)["loader"]
    elf = {f"loader/{loader}", "loader/libc.so.6", "loader/libstdc++.so.6", "runtimes/tvm/bin/edgebit-runner",
           "runtimes/tvm/lib/libtvm_runtime.so", "runtimes/tvm/lib/libstdc++.so.6", "runtimes/tvm/model.so"}
    data = {"runtimes/tvm/model.conf": b"inputs tokens position\n", "runtimes/tvm/weights.params": b"weights",
            "runtimes/tvm/lib/NOTICE": b"text", REFERENCE_INPUTS: b"ids", REFERENCE_LOGITS: b"logits",
            TOKENIZER: b"{}"}
    with BundleWriter(root) as writer:
        for path in elf:
            writer.path(path).write_bytes(FAKE_ELF + path.encode())
        for path, content in data.items():
            writer.path(path).write_bytes(content)
        return writer.commit({"model": {"family": "bitnet", "config": {"vocab_size": 16}, "max_seq_len": 8},
                              "target": _target(arch), "runtimes": {"tvm": {"version": "0"}}})


# --- fast checks (fake bundles) ---------------------------------------------------------------------------------

def test_native_names_are_extracted_library_names():
    for name in ("libc.so.6", "ld-linux-aarch64.so.1", "libstdc++.so.6", "model.so", "lib/libedgebit_ort_ops.so"):
        renamed = native_name(name)
        assert re.fullmatch(r"lib[A-Za-z0-9_]+\.so", renamed), renamed
    assert native_name("libc.so.6") == "libedgebit_libc_so_6.so"
    assert native_name("libstdc++.so.6") != native_name("libstdc.so.6")


def test_layout_of_a_fake_bundle(tmp_path):
    layout = android_layout(fake_bundle(tmp_path / "b"))
    native = {n.bundle_path: n.name for n in layout.native}
    assert native["loader/ld-linux-aarch64.so.1"] == LOADER_NAME
    assert native["runtimes/tvm/bin/edgebit-runner"] == RUNNER_NAME
    assert native["runtimes/tvm/model.so"] == "libedgebit_model_so.so"
    # The runtime's own libstdc++ shadows the loader's, as the bundle's --library-path lib:loader does.
    assert native["runtimes/tvm/lib/libstdc++.so.6"] == "libedgebit_libstdc___so_6.so"
    assert "loader/libstdc++.so.6" not in native
    assert len(set(native.values())) == len(native)
    assert layout.sonames == {"ld-linux-aarch64.so.1": LOADER_NAME, "libc.so.6": "libedgebit_libc_so_6.so",
                              "libstdc++.so.6": "libedgebit_libstdc___so_6.so",
                              "libtvm_runtime.so": "libedgebit_libtvm_runtime_so.so"}
    assert layout.links[f"{RUNTIME_ASSETS}/model.so"] == "libedgebit_model_so.so"
    assert layout.links[f"{RUNTIME_ASSETS}/lib/libtvm_runtime.so"] == "libedgebit_libtvm_runtime_so.so"
    assert set(layout.assets) == {"runtime/model.conf", "runtime/weights.params", "runtime/lib/NOTICE",
                                  REFERENCE_INPUTS, REFERENCE_LOGITS, TOKENIZER}


def test_write_layout(tmp_path):
    layout = android_layout(fake_bundle(tmp_path / "b"))
    out = tmp_path / "main"
    (out / JNI_DIR).mkdir(parents=True)
    (out / JNI_DIR / "libstale.so").write_bytes(b"from an earlier bundle")
    write_android_layout(layout, out)
    jni = sorted(p.name for p in (out / JNI_DIR).iterdir())
    assert jni == sorted(n.name for n in layout.native)
    assert all(re.fullmatch(r"lib.*\.so", name) and is_elf(out / JNI_DIR / name) for name in jni)
    assert all(os.access(out / JNI_DIR / name, os.X_OK) for name in jni)
    assets = out / ASSETS_DIR
    assert (assets / "runtime/weights.params").read_bytes() == b"weights"
    assert not any(is_elf(p) for p in assets.rglob("*") if p.is_file())
    lines = [line.split() for line in (assets / LINKS_TXT).read_text().splitlines()]
    assert dict(lines) == layout.links and all(len(line) == 2 for line in lines)
    app = json.loads((assets / APP_JSON).read_text())
    assert app["loader"] == LOADER_NAME and app["runner"] == RUNNER_NAME and app["runtime"] == "tvm"
    assert app["library_path"] == LINKS_DIR and app["runtime_dir"] == RUNTIME_ASSETS
    assert app["tokenizer"] == TOKENIZER and app["reference_logits"] == REFERENCE_LOGITS


def test_refuses_a_bundle_that_is_not_arm64(tmp_path):
    bundle = fake_bundle(tmp_path / "b", "x86_64")
    with pytest.raises(AndroidLayoutError, match="needs an arm64 bundle"):
        android_layout(bundle)
    assert_user_error(run_cli("android-layout", bundle.root, tmp_path / "out"), "needs an arm64 bundle")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # several CLI runs
def test_cli_errors_are_one_line(tmp_path):
    bundle = fake_bundle(tmp_path / "b")
    assert_user_error(run_cli("android-layout", tmp_path / "none", tmp_path / "out"), "not a bundle")
    assert_user_error(run_cli("android-layout", bundle.root, tmp_path / "out", "-r", "executorch"),
                      "no 'executorch' runtime")
    (bundle.root / "runtimes/tvm/model.conf").write_bytes(b"edited")
    assert_user_error(run_cli("android-layout", bundle.root, tmp_path / "out"), "does not match its sha256")
    result = subprocess.run([sys.executable, str(DEPLOY), str(tmp_path / "none")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("deploy_like_app: error:"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --- the demo model exported for arm64 --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Bundle:
    out = tmp_path_factory.mktemp("android") / "b"
    result = subprocess.run([EDGEBIT, "export", "demo", "-t", "arm64", "-o", str(out)], capture_output=True,
                            text=True, timeout=COMMAND_TIMEOUT)
    assert result.returncode == 0, result.stderr
    return Bundle.open(out)


@pytest.fixture(scope="module")
def app_dir(bundle, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("android") / "main"
    result = run_cli("android-layout", bundle.root, out)
    assert result.returncode == 0, result.stderr
    return out


def _dynamic(path: Path) -> tuple[list[str], str | None]:
    """DT_NEEDED names and DT_SONAME, as readelf -d prints them."""
    text = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", text)
    soname = re.findall(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", text)
    return needed, soname[0] if soname else None


@pytest.mark.slow
def test_every_elf_ships_as_a_native_library(bundle, app_dir):
    if shutil.which("readelf") is None:
        pytest.skip("needs readelf (apt-get install binutils)")
    layout = android_layout(bundle)
    jni = app_dir / JNI_DIR
    runtime = f"runtimes/{layout.runtime}/"
    bundle_elves = {p for p in bundle.manifest.files if p.startswith((runtime, f"{LOADER_DIR}/"))
                    and is_elf(bundle.file(p))}
    shipped = {n.bundle_path: n.name for n in layout.native}
    # Every ELF of the runtime and the loader is there, unless a runtime library of the same name shadows it.
    runtime_libs = {p.rsplit("/", 1)[1] for p in bundle_elves if p.startswith(f"{runtime}lib/")}
    for path in bundle_elves:
        if path not in shipped:
            assert path.startswith(f"{LOADER_DIR}/") and path.rsplit("/", 1)[1] in runtime_libs, path
            continue
        assert re.fullmatch(r"lib[A-Za-z0-9_]+\.so", shipped[path])
        assert (jni / shipped[path]).read_bytes() == bundle.file(path).read_bytes(), path
    assert sorted(p.name for p in jni.iterdir()) == sorted(shipped.values())
    assert not [p for p in (app_dir / ASSETS_DIR).rglob("*") if p.is_file() and is_elf(p)]


@pytest.mark.slow
def test_links_cover_every_needed_library(bundle, app_dir):
    if shutil.which("readelf") is None:
        pytest.skip("needs readelf (apt-get install binutils)")
    links = dict(line.split() for line in (app_dir / ASSETS_DIR / LINKS_TXT).read_text().splitlines())
    sonames = {k.removeprefix(f"{LINKS_DIR}/"): v for k, v in links.items() if k.startswith(f"{LINKS_DIR}/")}
    jni = app_dir / JNI_DIR
    provided = {p.rsplit("/", 1)[1] for p in bundle.manifest.files
                if p.startswith((f"runtimes/tvm/lib/", f"{LOADER_DIR}/")) and is_elf(bundle.file(p))}
    for elf in sorted(jni.iterdir()):
        needed, _ = _dynamic(elf)
        for name in needed:
            assert name in provided, f"{elf.name} needs {name}, which the bundle lacks"
            assert name in sonames, f"{elf.name} needs {name}, which links.txt does not link"
    for soname, renamed in sonames.items():
        assert (jni / renamed).is_file(), renamed
        declared = _dynamic(jni / renamed)[1]
        assert declared in (None, soname), (soname, renamed, declared)
    for link, renamed in links.items():  # ELF files the runner opens by path in its directory
        if link.startswith(f"{RUNTIME_ASSETS}/"):
            inner = link.removeprefix(f"{RUNTIME_ASSETS}/")
            assert (jni / renamed).read_bytes() == bundle.file(f"runtimes/tvm/{inner}").read_bytes()
    assert f"{RUNTIME_ASSETS}/model.so" in links


@pytest.mark.slow
@pytest.mark.qemu
def test_layout_runs_as_the_app_runs_it_under_qemu_user(bundle, app_dir, tmp_path):
    """nativeLibraryDir, filesDir with the links, cacheDir as TMPDIR: the command MainActivity.kt starts."""
    from edgebit.toolchain import provision

    qemu = provision.qemu_binary("qemu-aarch64")
    lib, files, cache = tmp_path / "lib", tmp_path / "files" / "edgebit", tmp_path / "cache"
    shutil.copytree(app_dir / JNI_DIR, lib)
    shutil.copytree(app_dir / ASSETS_DIR, files)
    cache.mkdir()
    app = json.loads((files / APP_JSON).read_text())
    for line in (files / LINKS_TXT).read_text().splitlines():
        link, renamed = line.split()
        (files / link).parent.mkdir(parents=True, exist_ok=True)
        (files / link).symlink_to(lib / renamed)
    out = cache / "logits.npy"
    result = subprocess.run([str(qemu), str(lib / app["loader"]), "--library-path", str(files / app["library_path"]),
                             str(lib / app["runner"]), str(files / app["runtime_dir"]), "logits",
                             str(files / app["reference_inputs"]), str(out)],
                            env={"PATH": os.environ.get("PATH", ""), "TMPDIR": str(cache), **RUNNER_ENVIRONMENT},
                            capture_output=True, text=True, timeout=COMMAND_TIMEOUT, cwd=files)
    assert result.returncode == 0, result.stderr
    agreement = compare_logits(np.load(out), np.load(files / app["reference_logits"]), app["rounding_noise"])
    assert agreement.passed, agreement.describe()


# --- deploy_like_app.py against the adbd of an emulated arm64 board ---------------------------------------------

@pytest.fixture(scope="module")
def adb_env():
    with private_adb_env() as env:
        yield env


@pytest.fixture(scope="module")
def adb_serial(adb_env):
    """An emulated arm64 board (``edgebit vm start arm64 --json``) whose adbd listens on 127.0.0.1; stopped at the
    end in any case."""
    if shutil.which("ssh-keygen") is None:
        pytest.skip("needs ssh-keygen to start a board (apt-get install openssh-client)")
    name = f"pytest-android-{os.getpid()}"
    result = subprocess.run([EDGEBIT, "vm", "start", "arm64", "--name", name, "--json"], capture_output=True,
                            text=True, timeout=COMMAND_TIMEOUT)
    try:
        assert result.returncode == 0, result.stderr
        yield json.loads(result.stdout)["adb"].removeprefix("adb:")
    finally:
        subprocess.run([EDGEBIT, "vm", "stop", name], capture_output=True, timeout=120)


def _deploy(env: dict, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DEPLOY), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=COMMAND_TIMEOUT)


@pytest.mark.slow
@pytest.mark.qemu
def test_deploy_like_app_over_adb(bundle, adb_env, adb_serial):
    result = _deploy(adb_env, bundle.root, "--serial", adb_serial, "--runtime", "tvm")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"PASS tvm on adb:{adb_serial} (app layout"), lines
    left = subprocess.run(["adb", "-s", adb_serial, "shell", "ls /data/local/tmp"], capture_output=True, text=True,
                          env=adb_env, timeout=120)
    assert left.returncode == 0 and "edgebit-app-" not in left.stdout, left.stdout  # removed at the end


@pytest.mark.slow
@pytest.mark.qemu
def test_deploy_like_app_errors_are_one_line(bundle, adb_env, adb_serial):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    for args, fragment in (((bundle.root, "--serial", f"127.0.0.1:{closed}"), "127.0.0.1"),
                           ((bundle.root, "--serial", adb_serial, "--runtime", "executorch"), "no 'executorch'")):
        result = _deploy(adb_env, *args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert lines[0].startswith("deploy_like_app: error:") and fragment in lines[0], lines[0]
