"""A real OpenSSH server on 127.0.0.1 for device tests: throwaway host and user keys, a client config file that
pins the host key (strict checking on), and stop() that kills it. Optionally a tiny tmpfs inside sshd's own mount
namespace (for the full-disk test), visible only to sshd and what it runs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


class LocalSshd:
    def __init__(self, root: Path, tmpfs: Path | None = None, tmpfs_size: str = "2m"):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host_key_pub = keygen(root / "host_key")
        self.user_key_pub = keygen(root / "user_key")
        (root / "authorized_keys").write_text(self.user_key_pub + "\n")
        (root / "sshd_config").write_text(
            f"ListenAddress 127.0.0.1\nPort {self.port}\nHostKey {root / 'host_key'}\n"
            f"AuthorizedKeysFile {root / 'authorized_keys'}\nPidFile none\nUsePAM no\nStrictModes no\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "Subsystem sftp internal-sftp\nLogLevel ERROR\n")
        (root / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {self.host_key_pub}\n")
        self.config = root / "ssh_config"
        self.write_client_config(root / "user_key", root / "known_hosts")
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege separation directory
        command = [SSHD, "-D", "-e", "-f", str(root / "sshd_config")]
        if tmpfs is not None:
            tmpfs.mkdir(parents=True, exist_ok=True)
            command = ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size={tmpfs_size} tmpfs "{tmpfs}" && exec '
                       + " ".join(f'"{c}"' for c in command)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(root / "sshd.log", "w"))
        self._wait_listening()

    def write_client_config(self, identity: Path, known_hosts: Path, alias: str = "edgebit-test") -> None:
        self.alias = alias
        self.config.write_text(
            f"Host {alias}\n  HostName 127.0.0.1\n  Port {self.port}\n  User {os.environ.get('USER', 'root')}\n"
            f"  IdentityFile {identity}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known_hosts}\n"
            "  StrictHostKeyChecking yes\n  GlobalKnownHostsFile /dev/null\n")

    @property
    def spec(self) -> str:
        return f"ssh://{self.alias}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "EDGEBIT_SSH_CONFIG": str(self.config)}

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def ssh(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", "-F", str(self.config), "-o", "BatchMode=yes", self.alias, command],
                              capture_output=True, text=True, timeout=60)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
