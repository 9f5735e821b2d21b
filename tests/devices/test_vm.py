"""Emulated boards (edgebit vm): qemu-system arm64 and riscv64 boards that answer SSH (system OpenSSH client,
strict host-key checking against the key edgebit pinned) and adb (Debian's adb client on a private server port).

The first run fetches each board from Debian (arm64 ~80 MB, riscv64 ~170 MB: kernel, userland, qemu-system-*);
later runs download nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest
from adb_helpers import private_adb_env

from cli_helpers import EDGEBIT, assert_user_error, run_cli
from edgebit.boards import image, vm
from edgebit.errors import EdgebitError

COMMAND_TIMEOUT = 120


def _ssh(board: dict, *command: str, config: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", "-F", config or board["ssh_config"], board["name"], *command],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=COMMAND_TIMEOUT)


UNAME = {"arm64": "aarch64", "riscv64": "riscv64"}


@pytest.fixture(scope="module", params=list(UNAME))
def board(request):
    """A board started through the CLI (``edgebit vm start ARCH --json``); stopped at the end in any case."""
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("needs the OpenSSH client (apt-get install openssh-client)")
    name = f"pytest-{request.param}-{os.getpid()}"
    result = subprocess.run([EDGEBIT, "vm", "start", request.param, "--name", name, "--json"], capture_output=True,
                            text=True, timeout=900)
    try:
        assert result.returncode == 0, result.stderr
        started = {**json.loads(result.stdout), "uname": UNAME[request.param]}
        yield started
    finally:
        if any(b.name == name for b in vm.list_boards()):
            vm.stop(name)


@pytest.fixture
def adb(board):
    """Runs Debian's adb client against its own server port (never a user's adb server); kills that server."""
    with private_adb_env() as env:
        yield lambda *args: subprocess.run(["adb", *args], capture_output=True, text=True, env=env,
                                           stdin=subprocess.DEVNULL, timeout=COMMAND_TIMEOUT)


@pytest.fixture
def payload(tmp_path) -> tuple[Path, str]:
    path = tmp_path / "payload.bin"
    path.write_bytes(os.urandom(1 << 20))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.qemu
def test_start_prints_device_specs(board):
    assert board["ssh"].startswith("ssh://root@127.0.0.1:")
    assert board["adb"].startswith("adb:127.0.0.1:")
    config = Path(board["ssh_config"]).read_text()
    assert "StrictHostKeyChecking yes" in config and "IdentityFile" in config and "UserKnownHostsFile" in config
    listed = json.loads(run_cli("vm", "list", "--json", check=True).stdout)
    assert {k: v for k, v in board.items() if k != "uname"} in listed


@pytest.mark.slow
@pytest.mark.qemu
def test_ssh_runs_commands_on_the_board(board):
    result = _ssh(board, "uname", "-m")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == board["uname"]
    assert _ssh(board, "exit 7").returncode == 7
    assert _ssh(board, "test -d /data/local/tmp && touch /tmp/w /data/local/tmp/w").returncode == 0


@pytest.mark.slow
@pytest.mark.qemu
def test_ssh_refuses_a_board_with_another_host_key(board, tmp_path):
    """The host key is pinned: a known_hosts with a different key for the board makes ssh refuse to connect."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = (tmp_path / "other.pub").read_text().split()
    known = tmp_path / "known_hosts"
    known.write_text(f"edgebit-board-{board['name']} {other[0]} {other[1]}\n")
    config = tmp_path / "ssh_config"
    config.write_text(Path(board["ssh_config"]).read_text().replace(
        str(Path(board["ssh_config"]).parent / "known_hosts"), str(known)))
    result = _ssh(board, "true", config=str(config))
    assert result.returncode == 255
    assert "HOST IDENTIFICATION HAS CHANGED" in result.stderr or "verification failed" in result.stderr


@pytest.mark.slow
@pytest.mark.qemu
def test_scp_push_and_sha256sum(board, payload):
    path, digest = payload
    pushed = subprocess.run(["scp", "-F", board["ssh_config"], str(path), f"{board['name']}:/tmp/payload.bin"],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=COMMAND_TIMEOUT)
    assert pushed.returncode == 0, pushed.stderr
    result = _ssh(board, "sha256sum", "/tmp/payload.bin")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == digest


@pytest.mark.slow
@pytest.mark.qemu
def test_adb_shell_exit_status_and_push(board, adb, payload):
    serial = board["adb"].removeprefix("adb:")
    connected = adb("connect", serial)
    assert connected.returncode == 0 and "connected" in connected.stdout, connected.stdout + connected.stderr
    deadline = time.monotonic() + 30
    while "\tdevice" not in (devices := adb("devices").stdout) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert f"{serial}\tdevice" in devices, devices
    assert adb("-s", serial, "shell", "exit 7").returncode == 7
    assert adb("-s", serial, "shell", "uname -m").stdout.strip() == board["uname"]
    path, digest = payload
    pushed = adb("-s", serial, "push", str(path), "/data/local/tmp/payload.bin")
    assert pushed.returncode == 0, pushed.stderr
    result = adb("-s", serial, "shell", "sha256sum /data/local/tmp/payload.bin")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == digest


@pytest.mark.slow
@pytest.mark.qemu
def test_stop_kills_qemu_and_forgets_the_board(board):
    """Runs last in this module: the other tests share the board."""
    pid = board["pid"]
    assert Path(f"/proc/{pid}").exists()
    run_cli("vm", "stop", board["name"], check=True)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:  # the CLI's child is reaped by init
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists()
    assert board["name"] not in [b["name"] for b in json.loads(run_cli("vm", "list", "--json").stdout)]
    assert_user_error(run_cli("vm", "stop", board["name"]), "no running board")


# --- fast checks (no emulator) ----------------------------------------------------------------------------------

def test_unknown_architecture_is_one_line_error():
    assert_user_error(run_cli("vm", "start", "sparc64"), "unknown board architecture", "arm64")
    with pytest.raises(EdgebitError, match="unknown board architecture"):
        image.board_spec("mips")


def test_dropbear_key_holds_the_openssh_seed_and_public_key(tmp_path):
    if shutil.which("ssh-keygen") is None:
        pytest.skip("needs ssh-keygen")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    key = vm.dropbear_key((tmp_path / "k").read_text())
    public_blob = __import__("base64").b64decode((tmp_path / "k.pub").read_text().split()[1])
    assert key[:15] == b"\0\0\0\x0bssh-ed25519" and key[15:19] == b"\0\0\0\x40" and len(key) == 83
    assert key[-32:] == public_blob[-32:]  # the OpenSSH public blob ends with the 32-byte key


def test_cpio_newc_layout():
    archive = image.cpio_newc([("etc", stat.S_IFDIR | 0o755, b""), ("etc/x", stat.S_IFREG | 0o600, b"hello"),
                               ("bin/sh", stat.S_IFLNK | 0o777, b"busybox")])
    assert archive.startswith(b"070701") and len(archive) % 4 == 0
    names, offset = [], 0
    while True:
        header = archive[offset:offset + 110]
        assert header[:6] == b"070701"
        size, name_size = int(header[54:62], 16), int(header[94:102], 16)
        name = archive[offset + 110:offset + 110 + name_size - 1].decode()
        offset += 110 + name_size
        offset += -offset % 4
        data = archive[offset:offset + size]
        offset += size + (-size % 4)
        if name == "TRAILER!!!":
            break
        names.append((name, data))
    assert names == [("etc", b""), ("etc/x", b"hello"), ("bin/sh", b"busybox")]
