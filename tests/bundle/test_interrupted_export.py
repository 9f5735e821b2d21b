"""Interrupted, killed, concurrent and out-of-space exports.

The invariant (edgebit.bundle.output): the output directory holds either the previous bundle intact or the new
complete one (nothing, if there was none), whatever stops an export; what a killed export leaves beside it is removed
by the next export to that directory, which succeeds; a second export to a directory in use fails at once with one
line; a full disk is one line, with nothing left written.

The writer's own kill points inside commit (before the swap, after it, between the fallback swap's two renames, while
the old bundle is deleted) are hit exactly in forked children of this process: fast. The command-line tests run
`edgebit export demo` for the host and stop it (SIGINT or SIGKILL) when one of its progress lines ("done <stage>")
appears: in the reference stage, during the TVM build, at the bundle write; they are slow (one export ~15-30 s).
"""

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from cli_helpers import EDGEBIT, assert_user_error, run_cli
from edgebit.bundle import Bundle, BundleError, BundleWriter, output
from edgebit.bundle.output import Output

RECORDS = {"model": {"family": "bitnet", "config": {"vocab_size": 16}, "max_seq_len": 8},
           "target": {"name": "x86_64", "triple": "x86_64-linux-gnu", "debian_arch": "amd64",
                      "loader": "ld-linux-x86-64.so.2"},
           "runtimes": {"tvm": {"version": "0"}}}


def write_bundle(root: Path, tag: bytes) -> Bundle:
    with BundleWriter(root) as writer:
        writer.write_bytes("model.so", tag)
        writer.write_bytes("lib/libx.so", b"runtime for " + tag)
        return writer.commit(RECORDS)


def tag_of(root: Path) -> bytes:
    """Which bundle ``root`` holds; it must be complete and unaltered."""
    Bundle.open(root).verify()
    return (root / "model.so").read_bytes()


def assert_clean(destination: Path) -> None:
    """Nothing beside the destination (no lock, staging or set-aside directory) and no scratch directory."""
    assert sorted(os.listdir(destination.parent)) == ([destination.name] if destination.exists() else [])
    assert Output(destination).leftovers() == []


# --- the writer, killed at exact points of commit (forked children, fast) ---------------------------------------

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


def exchange_then_die(a, b):
    if not REAL_EXCHANGE(a, b):
        os._exit(3)  # no RENAME_EXCHANGE on this file system: the test skips
    die()


def rename_dies(nth: int):
    calls = []

    def rename(a, b):
        calls.append(a)
        if len(calls) == nth:
            die()
        REAL_RENAME(a, b)
    return rename


def delete_one_file_then_die(path, *args, **kwargs):
    (Path(path) / "model.so").unlink()
    die()


REAL_EXCHANGE, REAL_RENAME = output._exchange, os.rename
NO_EXCHANGE = {"_exchange": lambda a, b: False}
# kill point -> (an old bundle at -o?, patches of edgebit.bundle.output and os, what -o holds after the kill)
KILL_POINTS = {
    "before-swap": (True, {"Output.swap_in": die}, b"old"),
    "after-exchange": (True, {"_exchange": exchange_then_die}, b"new"),
    "exchange-deleting-old": (True, {"shutil.rmtree": delete_one_file_then_die}, b"new"),
    "fallback-old-set-aside": (True, {**NO_EXCHANGE, "os.rename": rename_dies(2)}, None),
    "fallback-new-in-place": (True, {**NO_EXCHANGE, "os.rename": rename_dies(3)}, b"new"),
    "fallback-deleting-old": (True, {**NO_EXCHANGE, "shutil.rmtree": delete_one_file_then_die}, b"new"),
    "no-old-before-rename": (False, {"Output.swap_in": die}, None),
    "no-old-after-rename": (False, {"os.rename": lambda a, b: (REAL_RENAME(a, b), die())}, b"new"),
}


def patch(name: str, value) -> None:
    owner, attribute = name.rsplit(".", 1) if "." in name else ("", name)
    target = {"": output, "Output": Output, "os": os, "shutil": output.shutil}[owner]
    setattr(target, attribute, value)


def killed_writer(destination: Path, patches: dict) -> int:
    """Fork a child that applies ``patches`` and writes the bundle b"new" to ``destination``; it is SIGKILLed where a
    patch says. Returns its exit code (3: the file system cannot exchange) or -9."""
    pid = os.fork()
    if pid == 0:
        try:
            for name, value in patches.items():
                patch(name, value)
            write_bundle(destination, b"new")
        finally:
            os._exit(0)  # not killed: the caller sees 0 and fails
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_kill_in_commit_leaves_the_old_bundle_or_the_new_one(tmp_path, point):
    had_old, patches, expected = KILL_POINTS[point]
    destination = tmp_path / "b"
    if had_old:
        write_bundle(destination, b"old")
    status = killed_writer(destination, patches)
    if status == 3:
        pytest.skip(f"{tmp_path} does not support renameat2(RENAME_EXCHANGE)")
    assert status == -signal.SIGKILL
    if expected is not None:
        assert tag_of(destination) == expected
    else:
        assert not destination.exists()
    if had_old and expected is None:  # between the fallback's two renames: the old bundle waits intact beside it
        (aside,) = [p for p in Output(destination).leftovers() if ".old-" in p.name]
        assert tag_of(aside) == b"old"
    with BundleWriter(destination) as writer:  # the next export: first puts the old bundle back, removes the rest
        assert Output(destination).leftovers() == [writer.staging]
        if had_old and expected is None:
            assert tag_of(destination) == b"old"
        writer.write_bytes("model.so", b"next")
        writer.commit(RECORDS)
    assert tag_of(destination) == b"next"
    assert_clean(destination)


def test_a_second_writer_fails_at_once_naming_the_first(tmp_path):
    destination = tmp_path / "b"
    write_bundle(destination, b"old")
    with BundleWriter(destination) as first:
        with pytest.raises(BundleError, match=rf"b is in use by another edgebit export \(pid {os.getpid()}\); wait for "
                                              r"it or choose another output directory \(-o\)"):
            BundleWriter(destination)
        first.write_bytes("model.so", b"new")
        first.commit(RECORDS)
    assert tag_of(destination) == b"new"
    assert_clean(destination)


def test_a_lock_file_left_by_a_killed_export_is_harmless(tmp_path):
    destination = tmp_path / "b"
    (tmp_path / ".b.lock").write_text("999999\n")
    write_bundle(destination, b"new")
    assert tag_of(destination) == b"new"
    assert_clean(destination)


def test_other_destinations_leftovers_are_not_touched(tmp_path):
    """``.b.staging-1`` is b's; ``.b.x.staging-1`` belongs to destination ``b.x`` and must survive an export to b."""
    for name in (".b.x.staging-1", ".b.staging-1x", ".bb.old-2", "b.x"):
        (tmp_path / name).mkdir()
    (tmp_path / ".b.staging-1").mkdir()
    write_bundle(tmp_path / "b", b"new")
    assert sorted(os.listdir(tmp_path)) == [".b.staging-1x", ".b.x.staging-1", ".bb.old-2", "b", "b.x"]


def test_ctrl_c_during_the_swap_waits_for_it_and_is_dropped(tmp_path, monkeypatch):
    destination = tmp_path / "b"
    write_bundle(destination, b"old")

    def interrupted_exchange(a, b):
        os.kill(os.getpid(), signal.SIGINT)  # Python runs its handler at the next instruction: inside the swap
        time.sleep(0.05)
        return REAL_EXCHANGE(a, b)

    monkeypatch.setattr(output, "_exchange", interrupted_exchange)
    assert tag_of(write_bundle(destination, b"new").root) == b"new"  # no KeyboardInterrupt
    assert_clean(destination)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 2 MB tmpfs (mounting needs root; skipped elsewhere)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the full-disk test: {result.stderr.strip() or 'mount failed'}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def test_a_full_disk_is_one_error_and_nothing_written(small_tmpfs):
    destination = small_tmpfs / "b"
    with pytest.raises(BundleError) as raised:
        with BundleWriter(destination) as writer:
            writer.expect(3_000_000)
            writer.write_bytes("model.so", b"x" * 1_000_000)
            writer.write_bytes("weights.params", b"x" * 2_000_000)
    message = str(raised.value)
    assert message.startswith(f"no space left on {small_tmpfs} writing {destination}: need about 3 MB, 2 MB free; "
                              "free space or choose another output directory (-o)"), message
    assert os.listdir(small_tmpfs) == []


def test_a_read_only_output_is_one_error(small_tmpfs):
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    with pytest.raises(BundleError, match=f"cannot write {small_tmpfs}/sub/b: {small_tmpfs} is mounted read-only"):
        BundleWriter(small_tmpfs / "sub" / "b")


# --- the command line, stopped at its stages (slow) -----------------------------------------------------------

def host_target() -> str:
    from edgebit.targets import all_targets

    return next(t.name for t in all_targets().values() if t.is_host)


TAG = "EDGEBIT_TEST_EXPORT_TAG"  # marks an export's process tree, so that its compilers can be found after a kill
LOAD, BUILD, WRITE = "done load checkpoint", "done reference vectors", "done C/C++ runtime"


class Export:
    """`edgebit export demo -t HOST -o DESTINATION` in the background; its progress lines are read as they come."""

    def __init__(self, destination: Path):
        self.destination, self.tag = destination, uuid.uuid4().hex
        self.process = subprocess.Popen([EDGEBIT, "export", "demo", "-t", host_target(), "-o", str(destination)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, TAG: self.tag})
        self.lines = []

    def wait_for(self, progress: str) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            if progress in line:
                return
        pytest.fail(f"the export ended before {progress!r}: {''.join(self.lines)}{self.process.stderr.read()}")

    def stop_at(self, progress: str, signum: int, delay_s: float = 0.0):
        self.wait_for(progress)
        time.sleep(delay_s)
        self.process.send_signal(signum)
        return self.finish()

    def finish(self):
        stdout, stderr = self.process.communicate(timeout=300)
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, "".join(self.lines) + stdout,
                                           stderr)

    def processes(self) -> list[int]:
        """Processes still running with this export's tag (compilers, linkers it started)."""
        found = []
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"{TAG}={self.tag}".encode() in environ:
                found.append(int(entry))
        return found

    def wait_for_no_processes(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert self.processes() == [], f"processes of the killed export survive: {self.processes()}"


def assert_interrupted(result, destination: Path) -> None:
    assert result.returncode == 130, (result.returncode, result.stderr)
    assert result.stderr.strip().splitlines() == [f"edgebit: interrupted; nothing was written to {destination}"], \
        result.stderr


def no_leftovers_of(pid: int, destination: Path) -> None:
    assert not [p for p in Output(destination).leftovers() if p.name.endswith(f"-{pid}")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The demo's bundle for the host, exported while a second export to the same directory was started (its
    result is kept for test_concurrent_exports_to_one_directory)."""
    destination = tmp_path_factory.mktemp("exported") / "demo.bundle"
    first = Export(destination)
    first.wait_for(LOAD)  # it holds the lock from before loading the checkpoint
    second = run_cli("export", "demo", "-t", host_target(), "-o", destination)
    result = first.finish()
    assert result.returncode == 0, result.stderr
    return SimpleNamespace(bundle=destination, pid=first.process.pid, second=second)


def test_concurrent_exports_to_one_directory(exported):
    assert_user_error(exported.second, f"{exported.bundle} is in use by another edgebit export (pid {exported.pid})",
                      "wait for it or choose another output directory (-o)")
    Bundle.open(exported.bundle).verify()
    assert_clean(exported.bundle)


def test_stopped_exports_keep_the_old_bundle(exported, tmp_path):
    destination = tmp_path / "demo.bundle"
    subprocess.run(["cp", "-a", str(exported.bundle), str(destination)], check=True)
    old = (destination / "manifest.json").read_bytes()

    def holds_old() -> None:
        Bundle.open(destination).verify()
        assert (destination / "manifest.json").read_bytes() == old

    export = Export(destination)  # Ctrl-C while the reference vectors are computed
    assert_interrupted(export.stop_at(LOAD, signal.SIGINT), destination)
    holds_old()
    assert_clean(destination)
    assert export.processes() == []

    killed = Export(destination)  # SIGKILL during the TVM build
    assert killed.stop_at(BUILD, signal.SIGKILL, delay_s=2).returncode == -signal.SIGKILL
    holds_old()
    killed.wait_for_no_processes()

    export = Export(destination)  # Ctrl-C as the bundle is written: too late is fine, half-way is not
    result = export.stop_at(WRITE, signal.SIGINT)
    if result.returncode == 130:
        assert_interrupted(result, destination)
        holds_old()
    else:
        assert result.returncode == 0, result.stderr
        Bundle.open(destination).verify()
    no_leftovers_of(killed.process.pid, destination)  # the next export removed what the killed one left
    assert_clean(destination)
    assert export.processes() == []

    run_cli("export", "demo", "-t", host_target(), "-o", destination, check=True)
    Bundle.open(destination).verify()
    assert_clean(destination)


@pytest.mark.slow
def test_stopped_exports_without_an_old_bundle_leave_nothing(tmp_path):
    destination = tmp_path / "demo.bundle"
    killed = Export(destination)  # SIGKILL while the reference vectors are computed
    assert killed.stop_at(LOAD, signal.SIGKILL).returncode == -signal.SIGKILL
    assert not destination.exists()

    export = Export(destination)  # Ctrl-C during the TVM build
    assert_interrupted(export.stop_at(BUILD, signal.SIGINT, delay_s=2), destination)
    assert not destination.exists()
    assert_clean(destination)  # the killed export's staging and scratch directories, too
    assert export.processes() == []

    killed = Export(destination)  # SIGKILL as the bundle is written
    assert killed.stop_at(WRITE, signal.SIGKILL).returncode == -signal.SIGKILL
    if destination.exists():
        Bundle.open(destination).verify()  # killed after the rename: complete
    killed.wait_for_no_processes()

    run_cli("export", "demo", "-t", host_target(), "-o", destination, check=True)
    Bundle.open(destination).verify()
    assert_clean(destination)


@pytest.mark.slow
def test_export_to_a_full_disk_is_one_line_and_leaves_nothing(small_tmpfs):
    destination = small_tmpfs / "demo.bundle"
    result = run_cli("export", "demo", "-t", host_target(), "-o", destination)
    assert_user_error(result, f"no space left on {small_tmpfs} writing {destination}: need about",
                      "free space or choose another output directory (-o)")
    assert os.listdir(small_tmpfs) == []
    assert Output(destination).leftovers() == []
