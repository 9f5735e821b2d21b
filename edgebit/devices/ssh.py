"""A board over SSH (``ssh://[user@]host[:port][/remote/dir]``), through the system's OpenSSH client.

The user's ``~/.ssh/config``, agent, ``ProxyJump`` and ``known_hosts`` apply as they do for ``ssh`` itself
(``$EDGEBIT_SSH_CONFIG`` names another config file, as ``ssh -F`` does). Host keys are checked strictly: an unknown
or changed key is an error, never accepted. One multiplexed connection serves the whole session (ControlMaster);
files go over scp (SFTP), the work directory is made under the spec's directory (default ``/tmp``) and removed at
the end.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from edgebit.devices.base import DeviceError, DeviceKind, run_process
from edgebit.devices.remote import CONNECT_TIMEOUT_S, COPY_TIMEOUT_S, RemoteDevice
from edgebit.errors import EdgebitError

SSH_FAILED = 255  # ssh's own exit status when the connection, not the command, failed
PROBLEMS = (
    (r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|No \w+ host key is known",
     "the host key is unknown or has changed; check it, then add it with `ssh {host}` once (edgebit never accepts "
     "host keys)"),
    (r"Permission denied", "the device refused the login; install your key with `ssh-copy-id {host}` or load it "
     "into ssh-agent"),
    (r"Could not resolve hostname", "the host name does not resolve; check the name or use an IP address"),
    (r"Connection refused", "connection refused; check that sshd runs on the device and the port is right"),
    (r"timed out|No route to host|Network is unreachable", "the device cannot be reached; check that it is on "
     "and on the network"),
    (r"Connection closed|Connection reset|Broken pipe|closed by remote host|Control socket",
     "the connection was lost; check the device and try again"),
    (r"No space left on device", "the device's disk is full; free space or choose another directory "
     "(ssh://host/dir)"),
)


def parse_spec(spec: str) -> tuple[str | None, str, int | None, str]:
    """``ssh://[user@]host[:port][/dir]`` -> (user, host, port, directory)."""
    parts = urlsplit(spec)
    try:
        port = parts.port
    except ValueError:
        raise EdgebitError(f"device {spec!r}: the port must be a number") from None
    if parts.scheme != "ssh" or not parts.hostname or parts.query or parts.fragment:
        raise EdgebitError(f"device {spec!r}: expected ssh://[user@]host[:port][/remote/dir]")
    return parts.username, parts.hostname, port, parts.path or "/tmp"


class SshDevice(RemoteDevice):
    def __init__(self, spec: str):
        if shutil.which("ssh") is None or shutil.which("scp") is None:
            raise EdgebitError("the OpenSSH client is not installed; apt-get install openssh-client")
        self.user, self.host, self.port, self.base_dir = parse_spec(spec)
        self.name = spec
        self.destination = f"{self.user}@{self.host}" if self.user else self.host
        self._control_dir = tempfile.mkdtemp(prefix="eb-ssh-")  # short: unix socket paths are limited
        try:
            super().__init__()
        except BaseException:
            self._close()
            raise

    def _options(self) -> list[str]:
        config = os.environ.get("EDGEBIT_SSH_CONFIG")
        return [*(["-F", config] if config else []), "-o", "BatchMode=yes", "-o", "ControlMaster=auto",
                "-o", f"ControlPath={self._control_dir}/c", "-o", "ControlPersist=120",
                "-o", f"ConnectTimeout={int(CONNECT_TIMEOUT_S)}", "-o", "ServerAliveInterval=5",
                "-o", "ServerAliveCountMax=3"]

    def _transport(self, args, timeout, stdin=None, on_line=None):
        return run_process(args, timeout, stdin=stdin, on_line=on_line)

    def _shell_args(self, command: str) -> list[str]:
        return ["ssh", *self._options(), *(["-p", str(self.port)] if self.port else []), self.destination, command]

    def _scp(self, source: str, destination: str, what: str) -> None:
        args = ["scp", *self._options(), "-q", "-p", "-r", *(["-P", str(self.port)] if self.port else []),
                source, destination]
        result = subprocess.run(args, capture_output=True, timeout=COPY_TIMEOUT_S)
        if result.returncode != 0:
            stderr = result.stderr.decode(errors="replace")
            problem = self._transport_error(SSH_FAILED, stderr) or (stderr.strip().splitlines() or ["failed"])[-1]
            raise DeviceError(f"{self.describe()}: {what} failed: {problem}")

    def _send(self, local: Path, remote: str) -> None:
        self._scp(str(local), f"{self.destination}:{remote}", f"copying {local.name} to the device")

    def _fetch(self, remote: str, local: Path) -> None:
        self._scp(f"{self.destination}:{remote}", str(local), f"fetching {Path(remote).name}")

    def _transport_error(self, returncode: int, stderr: str) -> str | None:
        """ssh exits with 255 when the connection failed; any other status is the remote command's."""
        if returncode != SSH_FAILED:
            return None
        for pattern, message in PROBLEMS:
            if re.search(pattern, stderr):
                return message.format(host=self.destination)
        return f"ssh failed ({(stderr.strip().splitlines() or ['no output'])[-1]})"

    def _close(self) -> None:
        subprocess.run(["ssh", *self._options(), "-O", "exit", self.destination], capture_output=True, timeout=30)
        shutil.rmtree(self._control_dir, ignore_errors=True)

    def cleanup(self) -> None:
        super().cleanup()
        self._close()


KIND = DeviceKind("ssh", "ssh://USER@HOST:PORT/DIR", "a board over SSH; user, port and dir optional",
                  lambda spec: spec.startswith("ssh://"), lambda spec, bundle_target: SshDevice(spec))
