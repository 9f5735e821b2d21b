"""Debian's adb client on a private server port, so tests never touch a user's adb server or phone."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

import pytest

from sshd import free_port


@contextlib.contextmanager
def private_adb_env():
    """The environment for adb commands on a fresh server port; that server is killed at the end."""
    if shutil.which("adb") is None:
        pytest.skip("needs the adb client (apt-get install adb)")
    env = {**os.environ, "ANDROID_ADB_SERVER_PORT": str(free_port())}
    try:
        yield env
    finally:
        subprocess.run(["adb", "kill-server"], env=env, capture_output=True, timeout=60)
