"""The output directory of a bundle writer: one writer per destination at a time, and nothing half-written after
an interrupt, a kill or a full disk.

Beside the destination ``DIR/NAME`` a writer (process id ``PID``) uses:

* ``DIR/.NAME.lock``: flock'ed for the writer's whole life, without waiting, so a second export to the same
  directory fails at once with the first one's pid. Removed on release; one left by a killed writer is not locked
  and so harmless.
* ``DIR/.NAME.staging-PID``: the new bundle until it is complete.
* ``DIR/.NAME.old-PID``: the previous bundle, set aside for a moment by the fallback swap (below).
* ``$TMPDIR/edgebit-export-KEY-PID``: scratch space for builds (``KEY`` hashes the destination's path), so that
  their files, too, belong to the destination's lock.

Invariant: the destination holds either the previous bundle intact or the new complete one. :meth:`Output.swap_in`
exchanges the two directories in one ``renameat2(RENAME_EXCHANGE)`` where the kernel and file system allow it (Linux
3.15+ on ext4, xfs, btrfs, tmpfs, ...); elsewhere it renames the old bundle aside, the new one into place and then
deletes the old one, and only a kill between those two renames leaves the destination absent, the old bundle intact
at ``.NAME.old-PID``. The next writer for the destination, holding the lock, first puts such a bundle back and
removes every other leftover (:meth:`Output.remove_leftovers`): a killed export never trips a later one.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import hashlib
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from edgebit.bundle.layout import MANIFEST
from edgebit.bundle.manifest import ManifestError

DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
CHOOSE_ANOTHER = "choose another output directory (-o)"


class Output:
    """The destination of one bundle writer and the files it keeps beside it (see the module's docstring)."""

    def __init__(self, destination: Path):
        self.destination = Path(destination)  # as the user wrote it, for messages
        absolute = Path(os.path.abspath(destination))
        self.parent, self.name = absolute.parent, absolute.name
        if not self.name:
            raise ManifestError(f"{destination} cannot hold a bundle; {CHOOSE_ANOTHER}")
        self.path = absolute
        self.lock_path = self.parent / f".{self.name}.lock"
        self.staging = self.parent / f".{self.name}.staging-{os.getpid()}"
        self._leftover = re.compile(rf"\.{re.escape(self.name)}\.(staging|old)-[0-9]+")
        self._scratch_prefix = f"edgebit-export-{hashlib.sha256(str(absolute).encode()).hexdigest()[:16]}-"
        self.scratch = Path(tempfile.gettempdir()) / f"{self._scratch_prefix}{os.getpid()}"
        self._lock_fd: int | None = None

    @property
    def locked(self) -> bool:
        return self._lock_fd is not None

    # --- the lock ---------------------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Lock the destination for this process, or fail at once naming the process that has it."""
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                raise ManifestError(f"{self.destination} is in use by another edgebit export (pid {holder}); wait "
                                    f"for it or {CHOOSE_ANOTHER}") from None
            except BaseException:
                os.close(fd)
                raise
            try:
                current = os.stat(self.lock_path)
            except FileNotFoundError:
                current = None
            opened = os.fstat(fd)
            if current is not None and (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                self._lock_fd = fd
                return
            os.close(fd)  # its holder removed that file as it released it: lock the new one

    def release(self) -> None:
        """Remove the lock file (while still holding it, so nobody else holds a lock on a removed file) and unlock."""
        if self._lock_fd is None:
            return
        try:
            os.unlink(self.lock_path)
        except OSError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None

    # --- leftovers of killed writers ---------------------------------------------------------------------------

    def leftovers(self) -> list[Path]:
        """Every staging, set-aside and scratch directory of this destination, this writer's own included."""
        beside = [path for path in self.parent.iterdir() if self._leftover.fullmatch(path.name)] \
            if self.parent.is_dir() else []
        return sorted(beside) + sorted(Path(tempfile.gettempdir()).glob(f"{self._scratch_prefix}*"))

    def remove_leftovers(self) -> None:
        """With the lock held: put back a previous bundle a killed writer had set aside (if the destination is
        missing) and remove every other staging, set-aside and scratch directory of this destination."""
        assert self.locked, "remove_leftovers needs the lock"
        for path in self.leftovers():
            if (path.name.startswith(f".{self.name}.old-") and not os.path.lexists(self.path)
                    and (path / MANIFEST).is_file()):
                os.rename(path, self.path)
            else:
                _remove(path)

    def make_scratch(self) -> Path:
        self.scratch.mkdir(mode=0o700, exist_ok=True)
        return self.scratch

    def remove_own(self) -> None:
        """Remove this writer's staging and scratch directories (not the destination, not the lock)."""
        _remove(self.staging)
        _remove(self.scratch)

    # --- the swap ----------------------------------------------------------------------------------------------

    def swap_in(self) -> None:
        """Put the complete staging directory at the destination, then delete the previous bundle (if any).

        A SIGINT meanwhile waits until the previous bundle is gone and is then dropped: it came too late to stop
        the export, whose bundle is complete."""
        with _interrupts_deferred():
            if not os.path.lexists(self.path):
                os.rename(self.staging, self.path)
                return
            if _exchange(self.staging, self.path):
                old = self.staging  # now holds the previous bundle
            else:
                aside = self.parent / f".{self.name}.old-{os.getpid()}"
                os.rename(self.path, aside)
                os.rename(self.staging, self.path)
                os.rename(aside, self.staging)  # an .old- directory is always an intact bundle, never half-deleted
                old = self.staging
            _remove(old)  # what remains is a leftover for the next writer

    # --- disk errors -------------------------------------------------------------------------------------------

    def disk_error(self, exc: OSError, need: int) -> str | None:
        """One line for a full, read-only or forbidden output file system (``need``: bytes the bundle needs), or
        None when ``exc`` is about something else (e.g. a source file that cannot be read)."""
        if exc.errno not in DISK_ERRORS:
            return None
        where = _mount_point(self.parent)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            what = "no space left" if exc.errno == errno.ENOSPC else "disk quota exceeded"
            try:
                free = f", {shutil.disk_usage(self.parent).free / 1e6:.0f} MB free"
            except OSError:
                free = ""
            return (f"{what} on {where} writing {self.destination}: need about {max(1, round(need / 1e6))} MB"
                    f"{free}; free space or {CHOOSE_ANOTHER}")
        named = [f for f in (exc.filename, exc.filename2) if f is not None]
        if named and not any(_inside(f, self.parent) or _inside(f, self.scratch) for f in named):
            return None  # e.g. a file of the checkpoint that cannot be read
        if exc.errno == errno.EROFS:
            return f"cannot write {self.destination}: {where} is mounted read-only; {CHOOSE_ANOTHER}"
        return (f"cannot write {self.destination}: permission denied for {named[0] if named else self.parent}; "
                f"{CHOOSE_ANOTHER}")


def _remove(path: Path) -> None:
    """Remove a directory tree (a symlink: the link) as far as possible; what remains is left for the next writer."""
    if os.path.islink(path):
        try:
            os.unlink(path)
        except OSError:
            pass
    else:
        shutil.rmtree(path, ignore_errors=True)


def _read_pid(fd: int) -> str:
    for _ in range(20):  # the holder writes its pid just after it locks
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text:
            return text
        time.sleep(0.01)
    return "unknown"


def _inside(path, directory: Path) -> bool:
    """``path`` is ``directory``, below it, or above it (a parent being created)."""
    path, directory = os.path.abspath(os.fsdecode(path)), str(directory)
    return path == directory or path.startswith(directory + os.sep) or directory.startswith(path.rstrip(os.sep) + os.sep)


def _mount_point(path: Path) -> str:
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return str(path)


@functools.cache
def _renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2  # glibc 2.28+
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


AT_FDCWD, RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically; False where the C library, kernel or file system cannot."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


@contextmanager
def _interrupts_deferred():
    """Hold SIGINT (Ctrl-C) back while the body runs, then drop it (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
