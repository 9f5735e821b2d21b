"""The host itself as a device: files go to a private temporary directory, commands run as subprocesses."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from edgebit.devices.base import CommandResult, Device, DeviceError, DeviceKind, LineHandler, run_process
from edgebit.targets import host_debian_arch


class LocalDevice(Device):
    name = "local"

    def __init__(self):
        self.debian_arch = host_debian_arch()
        self.workdir = Path(tempfile.mkdtemp(prefix="edgebit-device-"))

    def push(self, local: Path) -> str:
        destination = self.workdir / local.name
        if local.is_dir():
            shutil.copytree(local, destination, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(local, destination)
        return str(destination)

    def command_prefix(self) -> list[str]:
        """What runs before the program: nothing here; qemu-user puts the emulator there."""
        return []

    def run(self, argv: list[str], timeout: float, env: dict[str, str] | None = None,
            on_line: LineHandler | None = None) -> CommandResult:
        full_env = {**os.environ, **(env or {})}
        start = time.monotonic()
        try:
            result = run_process([*self.command_prefix(), *argv], timeout, full_env, self.workdir, on_line=on_line)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{self.describe()}: {Path(argv[0]).name} did not finish within {timeout:.0f} s")
        except OSError as exc:
            raise DeviceError(f"{self.describe()}: cannot start {argv[0]} ({exc.strerror})")
        return CommandResult(result.returncode, result.stdout.decode(errors="replace"),
                             result.stderr.decode(errors="replace"), time.monotonic() - start)

    def pull(self, remote: str, local: Path) -> None:
        shutil.copy2(remote, local)

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


KIND = DeviceKind("local", "local", "this machine, for bundles of its architecture", lambda spec: spec == "local",
                  lambda spec, bundle_target: LocalDevice())
