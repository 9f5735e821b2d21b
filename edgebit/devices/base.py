"""The device interface: push files, run a command with a timeout, pull files, clean up.

Commands are argv lists whose paths are device paths (strings returned by :meth:`Device.push`). Every device kind
(local, qemu, and later ssh and adb) implements these four operations and nothing else, so the stages above
(run, validate, generate) never know where they run.
"""

from __future__ import annotations

import abc
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgebit.errors import EdgebitError


RUN_TIMEOUT_S = 1800.0  # how long one command may run on a device unless the user says otherwise (--timeout)


LineHandler = Callable[[str], None]  # called with each line the program prints, as it comes (streaming)


def run_process(args: list[str], timeout: float, env: dict[str, str] | None = None, cwd=None,
                stdin: bytes | None = None, on_line: LineHandler | None = None) -> subprocess.CompletedProcess:
    """``subprocess.run(args, capture_output=True)`` (bytes), except that with ``on_line`` each stdout line is
    also handed over as soon as it arrives; raises subprocess.TimeoutExpired after killing the process."""
    if on_line is None:
        return subprocess.run(args, input=stdin, capture_output=True, timeout=timeout, env=env, cwd=cwd)
    deadline = time.monotonic() + timeout
    with subprocess.Popen(args, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd) as process:
        stderr: list[bytes] = []
        drain = threading.Thread(target=lambda: stderr.append(process.stderr.read()), daemon=True)
        drain.start()
        if stdin is not None:
            process.stdin.write(stdin)
            process.stdin.close()
        stdout = []
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            for line in iter(process.stdout.readline, b""):
                stdout.append(line)
                on_line(line.decode(errors="replace").rstrip("\n"))
            process.wait(timeout=max(0.0, deadline - time.monotonic()) + 1)
        finally:
            timer.cancel()
        drain.join()
        if time.monotonic() >= deadline and process.returncode != 0:
            raise subprocess.TimeoutExpired(args, timeout)
        return subprocess.CompletedProcess(args, process.returncode, b"".join(stdout), b"".join(stderr))


class DeviceError(EdgebitError):
    """A device that cannot be reached, or a command on it that failed."""


@dataclass
class CommandResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def signal_name(self) -> str | None:
        """The signal that killed the process (SIGILL, SIGSEGV, ...), if any."""
        code = -self.returncode if self.returncode < 0 else self.returncode - 128 if self.returncode > 128 else 0
        try:
            return signal.Signals(code).name if code else None
        except ValueError:
            return None


class Device(abc.ABC):
    name: str
    debian_arch: str  # what the device executes: amd64, arm64, riscv64

    @abc.abstractmethod
    def push(self, local: Path) -> str:
        """Copy a file or directory to the device; return its device path."""

    @abc.abstractmethod
    def run(self, argv: list[str], timeout: float, env: dict[str, str] | None = None,
            on_line: LineHandler | None = None) -> CommandResult:
        """Run ``argv`` (device paths) on the device; ``on_line`` gets each stdout line as it is printed."""

    @abc.abstractmethod
    def pull(self, remote: str, local: Path) -> None:
        """Copy a device file back to the host."""

    @abc.abstractmethod
    def cleanup(self) -> None:
        """Remove everything this device object pushed."""

    def verify_files(self, root: str, files: dict[str, str]) -> None:
        """Check pushed files (relative path -> sha256) on the device itself. Devices that share the host's file
        system have nothing to add to the host's own check (Bundle.verify)."""

    def describe(self) -> str:
        return f"{self.name} ({self.debian_arch})" if getattr(self, "debian_arch", "") else self.name

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()


@dataclass(frozen=True)
class DeviceKind:
    """One ``--device`` syntax: how to recognize a spec and open the device it names."""

    name: str
    syntax: str  # as shown in --help, e.g. "qemu[:TARGET]"
    description: str
    matches: Callable[[str], bool]
    open: Callable[[str, "str | None"], Device]  # (spec, the bundle's target name) -> device
