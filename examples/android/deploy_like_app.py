#!/usr/bin/env python3
"""Deploy one runtime of an arm64 bundle over adb exactly as the Android app lays it out, and validate it.

    .venv/bin/python examples/android/deploy_like_app.py BUNDLE [--serial SERIAL] [--runtime RT]

The layout is :mod:`edgebit.bundle.android`'s, the one ``edgebit android-layout`` writes into the app:

    /data/local/tmp/edgebit-app-<id>/lib/        jniLibs/arm64-v8a/*     (the app's nativeLibraryDir)
    /data/local/tmp/edgebit-app-<id>/files/edgebit/   assets/edgebit/*  (the app's filesDir copy), plus the links of
                                                 links.txt (``ln -s`` here, ``Os.symlink`` in the app)
    /data/local/tmp/edgebit-app-<id>/cache/      TMPDIR and the output (the app's cacheDir)

then starts the loader from ``lib/`` with ``--library-path files/edgebit/links``, as ``MainActivity.kt`` does, pulls
the logits and compares them with the bundle's reference (``edgebit.validate.agreement.compare_logits``). Prints
one line; exit status 0 (within the bound), 1 (outside it) or 2 (an error, one line). The directory is removed at
the end. ``adb`` is Debian's client; ``ANDROID_ADB_SERVER_PORT`` chooses the adb server, as for adb itself.
What this cannot show is the app sandbox itself (SELinux domain, seccomp filter): ``adb shell`` runs as the shell
user, which is why the app sets ``GLIBC_TUNABLES`` and executes only from its nativeLibraryDir all the same.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from edgebit.bundle import Bundle
from edgebit.bundle.android import (APP_JSON, ASSETS_DIR, JNI_DIR, LINKS_DIR, LINKS_TXT, RUNTIME_ASSETS,
                                    android_layout, write_android_layout)
from edgebit.bundle.layout import REFERENCE_INPUTS, REFERENCE_LOGITS
from edgebit.errors import EdgebitError
from edgebit.toolchain.c_runtime import RUNNER_ENVIRONMENT
from edgebit.validate.agreement import compare_logits

BASE_DIR = "/data/local/tmp"
ADB_TIMEOUT_S = 600.0
CONNECT_WAIT_S = 30.0


class DeployError(EdgebitError):
    pass


def adb(serial: str | None, *args: str, timeout: float = ADB_TIMEOUT_S, check: bool = True,
        what: str = "adb") -> subprocess.CompletedProcess:
    command = ["adb", *(["-s", serial] if serial else []), *args]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise DeployError("the adb client is not installed; apt-get install adb") from None
    except subprocess.TimeoutExpired:
        raise DeployError(f"{what} took more than {timeout:.0f} s; check the device") from None
    if check and result.returncode != 0:
        lines = (result.stderr + result.stdout).strip().splitlines() or [f"exit status {result.returncode}"]
        raise DeployError(f"{what} failed: {lines[-1]}")
    return result


def connect(serial: str | None) -> str:
    """The serial to use: ``HOST:PORT`` is connected first; with none given, the only connected device."""
    if serial and re.fullmatch(r"[\w.-]+:\d+", serial):
        answer = adb(None, "connect", serial, timeout=CONNECT_WAIT_S, what=f"adb connect {serial}").stdout
        if "connected" not in answer:
            raise DeployError(f"adb connect {serial}: {answer.strip() or 'no answer'}; check that adbd listens there")
    deadline = time.monotonic() + CONNECT_WAIT_S
    while True:
        lines = adb(None, "devices", timeout=CONNECT_WAIT_S, what="adb devices").stdout.splitlines()[1:]
        ready = [line.split()[0] for line in lines if line.strip() and line.split()[-1] == "device"]
        if serial is None and len(ready) == 1:
            return ready[0]
        if serial is not None and serial in ready:
            return serial
        if time.monotonic() > deadline:
            which = ", ".join(ready) or "none"
            wanted = serial or "exactly one device"
            raise DeployError(f"{wanted} is not connected (connected: {which}); check `adb devices`, or pass --serial")
        time.sleep(0.5)


def deploy_and_validate(bundle_dir: Path, serial: str | None, runtime: str | None, timeout: float) -> tuple[str, bool]:
    bundle = Bundle.open(bundle_dir)
    bundle.verify()
    layout = android_layout(bundle, runtime)
    if REFERENCE_INPUTS not in layout.assets or REFERENCE_LOGITS not in layout.assets:
        raise DeployError(f"{bundle_dir} has no reference vectors; export it again")
    serial = connect(serial)
    root = f"{BASE_DIR}/edgebit-app-{uuid.uuid4().hex[:12]}"
    lib, files, cache = f"{root}/lib", f"{root}/files/edgebit", f"{root}/cache"
    q = shlex.quote

    def shell(command: str, what: str, timeout_s: float = ADB_TIMEOUT_S) -> subprocess.CompletedProcess:
        return adb(serial, "shell", command, timeout=timeout_s, what=what)

    with tempfile.TemporaryDirectory() as tmp:
        write_android_layout(layout, Path(tmp))
        try:
            shell(f"mkdir -p {q(root)}/files {q(cache)}", "creating the app directories")
            adb(serial, "push", str(Path(tmp) / JNI_DIR), lib, what="pushing jniLibs (nativeLibraryDir)")
            adb(serial, "push", str(Path(tmp) / ASSETS_DIR), files, what="pushing assets (filesDir)")
            # What the package manager and MainActivity do: extracted libraries are 0755; links from links.txt.
            shell(f"chmod 755 {q(lib)}/* && cd {q(files)} && test -f {APP_JSON} && "
                  f"while read -r link name; do mkdir -p \"$(dirname \"$link\")\" && "
                  f"ln -s {q(lib)}/\"$name\" \"$link\" || exit 1; done < {LINKS_TXT}", "creating the links")
            env = {"TMPDIR": cache, **RUNNER_ENVIRONMENT}
            command = [f"{lib}/{layout.loader}", "--library-path", f"{files}/{LINKS_DIR}", f"{lib}/{layout.runner}",
                       f"{files}/{RUNTIME_ASSETS}", "logits", f"{files}/{REFERENCE_INPUTS}", f"{cache}/logits.npy"]
            started = time.monotonic()
            result = adb(serial, "shell", f"cd {q(files)} && " + " ".join(f"{k}={q(v)}" for k, v in env.items())
                         + " " + " ".join(q(c) for c in command), timeout=timeout, check=False,
                         what="the runner")
            seconds = time.monotonic() - started
            if result.returncode != 0:
                detail = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or ["no output"])
                raise DeployError(f"the runner failed on adb:{serial} (exit status {result.returncode}): {detail[-1]}")
            local = Path(tmp) / "logits.npy"
            adb(serial, "pull", f"{cache}/logits.npy", str(local), what="pulling the logits")
            logits = np.load(local, allow_pickle=False)
        finally:
            adb(serial, "shell", f"rm -rf {q(root)}", check=False, timeout=CONNECT_WAIT_S * 4)
    reference = np.load(bundle.file(REFERENCE_LOGITS), allow_pickle=False)
    if logits.shape != reference.shape:
        raise DeployError(f"the runner wrote logits {list(logits.shape)}, the reference is {list(reference.shape)}")
    agreement = compare_logits(logits, reference, bundle.manifest.model.rounding_noise)
    verdict = "PASS" if agreement.passed else "FAIL"
    line = (f"{verdict} {layout.runtime} on adb:{serial} (app layout, {len(layout.native)} native files, "
            f"{len(layout.links)} links, {seconds:.1f} s): {agreement.describe()}")
    return line, agreement.passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, help="arm64 bundle directory (edgebit export -t android-arm64)")
    parser.add_argument("--serial", "-s", help="adb serial, or HOST:PORT to connect to (default: the only device)")
    parser.add_argument("--runtime", "-r", help="one of the bundle's runtimes (default: its first)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds the runner may take on the device")
    args = parser.parse_args(argv)
    try:
        line, passed = deploy_and_validate(args.bundle, args.serial, args.runtime, args.timeout)
    except EdgebitError as exc:
        print(f"deploy_like_app: error: {exc}", file=sys.stderr)
        return 2
    print(line)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
