"""What SSH and adb devices share: a private work directory on the device, commands through a shell with a pid
file (so a timeout also stops the remote process), the device's own ``sha256sum`` to check what was pushed, and
clean-up of everything pushed.

A transport supplies four primitives: :meth:`RemoteDevice._shell` (one shell command line, its exit status, stdout
and stderr), :meth:`_send` and :meth:`_fetch` (copy a file or directory), and :meth:`_transport_error` (turn the
transport's failure output into one line that says what to do).
"""

from __future__ import annotations

import abc
import shlex
import subprocess
import time
import uuid
from pathlib import Path

from edgebit.devices.base import CommandResult, Device, DeviceError, LineHandler

ARCHITECTURES = {"aarch64": "arm64", "arm64": "arm64", "armv8l": "arm64", "x86_64": "amd64", "riscv64": "riscv64"}
CONNECT_TIMEOUT_S = 30.0
COPY_TIMEOUT_S = 1800.0  # one push or pull of a bundle
SHA256_TOOLS = ("sha256sum", "toybox sha256sum", "busybox sha256sum")


class RemoteDevice(Device):
    """A device reached through a command-line transport (ssh, adb)."""

    base_dir: str  # where the work directory is made, e.g. /tmp or /data/local/tmp

    def __init__(self):
        self.workdir: str | None = None
        self.debian_arch = ""  # until the device answers
        self.debian_arch = self._detect_architecture()

    # ---- the transport
    @abc.abstractmethod
    def _transport(self, args: list[str], timeout: float, stdin: bytes | None = None,
                   on_line: LineHandler | None = None) -> subprocess.CompletedProcess:
        """Run the transport's client (ssh, adb) with ``args`` (base.run_process); raises
        subprocess.TimeoutExpired."""

    @abc.abstractmethod
    def _shell_args(self, command: str) -> list[str]:
        """Client arguments that run ``command`` (one shell line) on the device."""

    @abc.abstractmethod
    def _send(self, local: Path, remote: str) -> None:
        """Copy ``local`` (file or directory) to the device path ``remote``."""

    @abc.abstractmethod
    def _fetch(self, remote: str, local: Path) -> None:
        """Copy the device file ``remote`` to ``local``."""

    @abc.abstractmethod
    def _transport_error(self, returncode: int, stderr: str) -> str | None:
        """A one-line explanation when the transport itself failed (not the command), else None."""

    # ---- shell helpers
    def _shell(self, command: str, timeout: float = CONNECT_TIMEOUT_S) -> CommandResult:
        start = time.monotonic()
        try:
            result = self._transport(self._shell_args(command), timeout)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{self.describe()} did not answer within {timeout:.0f} s; check that it is "
                              "reachable") from None
        except OSError as exc:
            raise DeviceError(f"{self.describe()}: cannot start the client ({exc.strerror}); run `edgebit doctor`")
        return self._completed(result, start)

    def _completed(self, result: subprocess.CompletedProcess, start: float, during: str = "") -> CommandResult:
        """The command's result, or one line when the transport itself failed (``during``: what was running)."""
        stdout, stderr = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
        problem = self._transport_error(result.returncode, stderr)
        if problem:
            raise DeviceError(f"{self.describe()}: {problem}{during}")
        return CommandResult(result.returncode, stdout, stderr, time.monotonic() - start)

    def _checked(self, command: str, what: str, timeout: float = CONNECT_TIMEOUT_S) -> str:
        result = self._shell(command, timeout)
        if result.returncode != 0:
            detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise DeviceError(f"{self.describe()}: {what} failed ({detail})")
        return result.stdout

    def _detect_architecture(self) -> str:
        machine = self._checked("uname -m", "asking the architecture").strip()
        if machine not in ARCHITECTURES:
            raise DeviceError(f"{self.describe()} runs {machine!r}, which no edgebit target builds for")
        return ARCHITECTURES[machine]

    def _ensure_workdir(self) -> str:
        if self.workdir is None:
            path = f"{self.base_dir.rstrip('/')}/edgebit-{uuid.uuid4().hex[:12]}"
            self._checked(f"mkdir -p {shlex.quote(path)} && chmod 700 {shlex.quote(path)}",
                          f"creating {path} (is {self.base_dir} writable?)")
            self.workdir = path
        return self.workdir

    # ---- the Device interface
    def push(self, local: Path) -> str:
        remote = f"{self._ensure_workdir()}/{local.name}"
        try:
            self._send(local, remote)
        except DeviceError:
            self._explain_full_disk(local)
            raise
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{self.describe()}: copying {local.name} timed out; check the connection") from None
        return remote

    def _explain_full_disk(self, local: Path) -> None:
        """After a failed copy: if the device lacks the space for ``local``, say so (copy tools rarely do)."""
        needed = sum(p.stat().st_size for p in local.rglob("*") if p.is_file()) if local.is_dir() else local.stat().st_size
        try:
            lines = self._shell(f"df -kP {shlex.quote(self.base_dir)}").stdout.strip().splitlines()
            free_kb = int(lines[-1].split()[-3])
        except (DeviceError, IndexError, ValueError):
            return
        if free_kb * 1024 < needed:
            raise DeviceError(f"{self.describe()}: the device's disk is full ({free_kb / 1024:.1f} MB free under "
                              f"{self.base_dir}, {local.name} needs {needed / 1e6:.1f} MB); free space or choose "
                              "another directory")

    def pull(self, remote: str, local: Path) -> None:
        try:
            self._fetch(remote, local)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{self.describe()}: fetching {remote} timed out; check the connection") from None

    def run(self, argv: list[str], timeout: float, env: dict[str, str] | None = None,
            on_line: LineHandler | None = None) -> CommandResult:
        """Run ``argv`` in the work directory; on timeout the remote process is killed too."""
        workdir = self._ensure_workdir()
        pidfile = f"{workdir}/.pid"
        assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        # The program runs as a child of the shell, so a signal that kills it comes back as status 128 + n (ssh
        # would report any signal-killed remote command as its own failure, 255), and its pid is kept for a kill.
        program = " ".join(shlex.quote(a) for a in argv)
        command = (f"cd {shlex.quote(workdir)} && {{ env {assignments} {program} & }} && echo $! > "
                   f"{shlex.quote(pidfile)} && wait $!")
        start = time.monotonic()
        try:
            result = self._transport(self._shell_args(command), timeout, on_line=on_line)
        except subprocess.TimeoutExpired:
            self._shell(f"kill -9 $(cat {shlex.quote(pidfile)}) 2>/dev/null; rm -f {shlex.quote(pidfile)}")
            raise DeviceError(f"{self.describe()}: {Path(argv[0]).name} did not finish within {timeout:.0f} s and "
                              "was stopped; raise the timeout or use a smaller input") from None
        return self._completed(result, start, f" (while running {Path(argv[0]).name})")

    def verify_files(self, root: str, files: dict[str, str]) -> None:
        """Check the sha256 of pushed files with the device's own tool, so a corrupted transfer is caught there."""
        listing = "".join(f"{digest}  {path}\n" for path, digest in sorted(files.items()))
        sums = f"{root}/.edgebit-sha256"
        self._write_text(sums, listing)
        for tool in SHA256_TOOLS:
            probe = self._shell(f"{tool} /dev/null >/dev/null 2>&1")
            if probe.returncode == 0:
                break
        else:
            raise DeviceError(f"{self.describe()} has no sha256sum (coreutils, toybox or busybox); install one")
        result = self._shell(f"cd {shlex.quote(root)} && {tool} -c .edgebit-sha256 2>&1 | grep -v ': OK$'; "
                             f"rm -f .edgebit-sha256", timeout=600)
        bad = [line for line in result.stdout.splitlines() if line.strip()]
        if bad:
            raise DeviceError(f"{self.describe()}: files arrived corrupted on the device ({bad[0].strip()}); "
                              "check the device's storage and connection, then try again")

    def _write_text(self, remote: str, text: str) -> None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / Path(remote).name
            local.write_text(text)
            self._send(local, remote)

    def cleanup(self) -> None:
        """Remove the work directory; a device that cannot be reached any more is left as it is."""
        if self.workdir is None:
            return
        try:
            self._shell(f"rm -rf {shlex.quote(self.workdir)}")
            self.workdir = None
        except DeviceError:
            pass
