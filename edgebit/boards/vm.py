"""Start, list and stop emulated boards: ``qemu-system-*`` processes that outlive the command that started them.

Each board has a runtime folder under edgebit's cache (``boards/run/<name>/``) with its state (``state.json``), a
throwaway client key pair, the board's host key (generated here, so strict host-key checking works from the first
connection), an OpenSSH config file, its initramfs and the console log. The board listens on 127.0.0.1 only:
SSH (dropbear) and adb (adbd over TCP) are forwarded by qemu's user network from two free local ports.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgebit.boards import image
from edgebit.errors import EdgebitError
from edgebit.toolchain import provision

BOOT_TIMEOUT_S = 180.0  # TCG on a busy 2-core host; a board answers in a few seconds on an idle one
CONSOLE_TAIL = 15


@dataclass
class Board:
    name: str
    arch: str
    pid: int
    ssh_port: int
    adb_port: int
    ssh: str  # ssh://root@127.0.0.1:PORT
    adb: str  # adb:127.0.0.1:PORT (a device spec); the adb serial is 127.0.0.1:PORT
    ssh_config: str  # an OpenSSH config file (ssh -F) with key, pinned host key and port
    identity: str
    known_hosts: str
    console_log: str
    boot_seconds: float
    started: float
    fetched_bytes: int = 0  # downloaded from Debian by this start (first use only)
    fetch_seconds: float = 0.0

    @property
    def adb_serial(self) -> str:
        return f"127.0.0.1:{self.adb_port}"

    def summary(self) -> dict:
        return {"name": self.name, "ssh": self.ssh, "adb": self.adb, "pid": self.pid, "ssh_config": self.ssh_config}


def run_root() -> Path:
    root = provision.cache_dir() / "boards" / "run"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _alive(pid: int, folder: Path) -> bool:
    """Whether ``pid`` is still this board's qemu (not a zombie, not a recycled pid)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return status.rsplit(")", 1)[-1].split()[0] != "Z" and str(folder).encode() in cmdline


def _load(folder: Path) -> Board | None:
    try:
        return Board(**json.loads((folder / "state.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None


def list_boards() -> list[Board]:
    """Running boards; the folders of boards whose qemu is gone are removed."""
    boards = []
    for folder in sorted(run_root().iterdir()):
        board = _load(folder)
        if board is not None and _alive(board.pid, folder):
            boards.append(board)
        elif board is not None or time.time() - folder.stat().st_mtime > 3600:  # (no state: maybe starting)
            shutil.rmtree(folder, ignore_errors=True)
    return boards


def get_board(name: str) -> Board:
    for board in list_boards():
        if board.name == name:
            return board
    running = ", ".join(b.name for b in list_boards()) or "none"
    raise EdgebitError(f"no running board named {name!r} (running: {running})")


def stop(name: str) -> None:
    """Kill the board's qemu and remove its folder."""
    folder = run_root() / name
    board = _load(folder)
    if board is None:
        raise EdgebitError(f"no running board named {name!r}")
    _kill(board.pid, folder)
    shutil.rmtree(folder, ignore_errors=True)


def _kill(pid: int, folder: Path) -> None:
    if not _alive(pid, folder):
        _reap(pid)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _reap(pid)
        if not _alive(pid, folder):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        _reap(pid)
        if not _alive(pid, folder):
            return
        time.sleep(0.05)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)  # when the board was started by this process
    except ChildProcessError:
        pass


# --- keys ------------------------------------------------------------------------------------------------------

def _keygen(path: Path, comment: str) -> None:
    if shutil.which("ssh-keygen") is None:
        raise EdgebitError("ssh-keygen is not installed; install it with: apt-get install -y openssh-client")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True,
                   stdin=subprocess.DEVNULL, capture_output=True)


def _strings(data: bytes, offset: int, count: int) -> tuple[list[bytes], int]:
    values = []
    for _ in range(count):
        (length,) = struct.unpack_from(">I", data, offset)
        values.append(data[offset + 4:offset + 4 + length])
        offset += 4 + length
    return values, offset


def dropbear_key(openssh_private_key: str) -> bytes:
    """An unencrypted OpenSSH ed25519 private key in dropbear's format: string "ssh-ed25519", then a 64-byte
    string of the 32-byte seed followed by the 32-byte public key."""
    body = "".join(line for line in openssh_private_key.splitlines() if not line.startswith("-----"))
    data = base64.b64decode(body)
    magic = b"openssh-key-v1\0"
    if not data.startswith(magic):
        raise EdgebitError("not an OpenSSH private key")
    (cipher, kdf, _options), offset = _strings(data, len(magic), 3)
    if cipher != b"none" or kdf != b"none":
        raise EdgebitError("the host key must not be encrypted")
    offset += 4  # number of keys (1)
    (_public, private), offset = _strings(data, offset, 2)
    (kind, public, secret), _ = _strings(private, 8, 3)  # after two check integers
    if kind != b"ssh-ed25519" or len(secret) != 64:
        raise EdgebitError("the host key must be an ed25519 key")
    name = b"ssh-ed25519"
    return struct.pack(">I", len(name)) + name + struct.pack(">I", 64) + secret[:32] + public


def _ssh_config(board_name: str, port: int, identity: Path, known_hosts: Path) -> str:
    return "\n".join([
        f"# edgebit board {board_name}: ssh -F THIS_FILE {board_name}  (or ssh -F THIS_FILE -p {port} root@127.0.0.1)",
        f"Host {board_name} 127.0.0.1 localhost",
        "  HostName 127.0.0.1",
        f"  Port {port}",
        "  User root",
        f'  IdentityFile "{identity}"',
        "  IdentitiesOnly yes",
        f'  UserKnownHostsFile "{known_hosts}"',
        "  GlobalKnownHostsFile /dev/null",
        "  StrictHostKeyChecking yes",
        "  CheckHostIP no",
        f"  HostKeyAlias edgebit-board-{board_name}",
        "  BatchMode yes",
        "  ConnectTimeout 10",
        "  LogLevel ERROR",
        "",
    ])


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _banner(port: int) -> bool:
    """qemu accepts on the forwarded port before the guest listens; only the SSH banner tells it is up."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(3)
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def _tail(path: Path, lines: int = CONSOLE_TAIL) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def _fresh_name(arch: str) -> str:
    taken = {b.name for b in list_boards()} | {p.name for p in run_root().iterdir()}
    n = 1
    while f"{arch}-{n}" in taken:
        n += 1
    return f"{arch}-{n}"


def start(arch: str, name: str | None = None, memory_mb: int = 1024, cpus: int = 2,
          timeout_s: float = BOOT_TIMEOUT_S) -> Board:
    """Boot an emulated ``arch`` board and return once an SSH login works."""
    files = image.board_files(arch)
    spec = files.spec
    name = name or _fresh_name(spec.arch)
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise EdgebitError(f"board name {name!r}: use letters, digits, '-', '_' and '.'")
    if any(b.name == name for b in list_boards()):
        raise EdgebitError(f"a board named {name!r} is already running; stop it with: edgebit vm stop {name}")
    folder = run_root() / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700)

    identity, host_key = folder / "id_ed25519", folder / "host_ed25519"
    _keygen(identity, f"edgebit-board-{name}")
    _keygen(host_key, f"edgebit-board-{name}-host")
    host_public = (folder / "host_ed25519.pub").read_text().split()
    overlay = image.initrd_archive([
        ("etc", stat.S_IFDIR | 0o755, b""), ("etc/dropbear", stat.S_IFDIR | 0o700, b""),
        ("etc/dropbear/host_key", stat.S_IFREG | 0o600, dropbear_key(host_key.read_text())),
        ("root", stat.S_IFDIR | 0o700, b""), ("root/.ssh", stat.S_IFDIR | 0o700, b""),
        ("root/.ssh/authorized_keys", stat.S_IFREG | 0o600, (folder / "id_ed25519.pub").read_bytes()),
    ])
    initrd = folder / "initrd.cpio"
    initrd.write_bytes(files.initrd.read_bytes() + overlay)
    known_hosts = folder / "known_hosts"
    known_hosts.write_text(f"edgebit-board-{name} {host_public[0]} {host_public[1]}\n")

    ssh_port, adb_port = _free_ports(2)
    config = folder / "ssh_config"
    config.write_text(_ssh_config(name, ssh_port, identity, known_hosts))
    console = folder / "console.log"
    argv = [str(files.qemu), *spec.machine, "-smp", str(cpus), "-m", str(memory_mb),
            "-kernel", str(files.kernel), "-initrd", str(initrd), "-append", f"console={spec.console} quiet",
            "-nographic", "-no-reboot",
            "-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{ssh_port}-:22,"
                       f"hostfwd=tcp:127.0.0.1:{adb_port}-:5555",
            "-device", "virtio-net-pci,netdev=net0,romfile=",
            "-device", "virtio-rng-pci",
            "-name", f"edgebit-board-{name}", *(["-bios", str(files.firmware)] if files.firmware else [])]
    env = dict(os.environ)
    if files.library_path:
        env["LD_LIBRARY_PATH"] = files.library_path + (":" + env["LD_LIBRARY_PATH"]
                                                       if env.get("LD_LIBRARY_PATH") else "")
    started = time.monotonic()
    with open(console, "wb") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)  # a board outlives the command that started it
    board = Board(name, spec.arch, process.pid, ssh_port, adb_port, f"ssh://root@127.0.0.1:{ssh_port}",
                  f"adb:127.0.0.1:{adb_port}", str(config), str(identity), str(known_hosts), str(console), 0.0,
                  time.time())
    try:
        _wait_for_ssh(board, process, started, timeout_s)
    except BaseException:
        _kill(process.pid, folder)
        log_copy = provision.cache_dir() / "boards" / f"{name}-failed-console.log"
        shutil.copy(console, log_copy)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    board.boot_seconds = round(time.monotonic() - started, 2)
    board.fetched_bytes, board.fetch_seconds = files.fetched["bytes"], round(files.fetched["seconds"], 1)
    (folder / "state.json").write_text(json.dumps(asdict(board), indent=1))
    return board


def _wait_for_ssh(board: Board, process: subprocess.Popen, started: float, timeout_s: float) -> None:
    log_copy = provision.cache_dir() / "boards" / f"{board.name}-failed-console.log"
    while True:
        if process.poll() is not None:
            raise EdgebitError(f"qemu exited with status {process.returncode} before board {board.name} answered; "
                               f"console log: {log_copy} ({_tail(Path(board.console_log), 3)})")
        if time.monotonic() - started > timeout_s:
            raise EdgebitError(f"board {board.name} did not answer SSH within {timeout_s:.0f} s; console log: "
                               f"{log_copy} (last lines: {_tail(Path(board.console_log), 3)})")
        if _banner(board.ssh_port):
            result = subprocess.run(["ssh", "-F", board.ssh_config, board.name, "true"], capture_output=True,
                                    text=True, stdin=subprocess.DEVNULL, timeout=60)
            if result.returncode == 0:
                return
        time.sleep(0.2)


def specs_text(board: Board) -> str:
    """What a user needs to reach the board."""
    fetched = (f" (fetched {board.fetched_bytes / 1e6:.0f} MB of Debian packages in {board.fetch_seconds:.0f} s first)"
               if board.fetched_bytes else "")
    return "\n".join([
        f"board {board.name} ({board.arch}, pid {board.pid}) answered SSH after {board.boot_seconds:.1f} s{fetched}",
        f"  ssh:  {board.ssh}   (ssh -F {board.ssh_config} {board.name})",
        f"  adb:  {board.adb}   (adb connect {board.adb_serial})",
        f"  ssh config: {board.ssh_config}",
        f"  stop: edgebit vm stop {board.name}",
    ])
