"""adb devices: choosing a device by serial, with the real adb client and a private adb server (so no user's server
or phone is touched). Bundles over adb on an emulated board: tests/devices/test_board.py."""

import shutil
import subprocess

import pytest

from cli_helpers import EDGEBIT, assert_user_error
from adb_helpers import private_adb_env

pytestmark = pytest.mark.skipif(shutil.which("adb") is None, reason="adb is not installed (apt-get install adb)")


@pytest.fixture
def adb_env():
    with private_adb_env() as env:
        yield env


@pytest.fixture
def bundle(tmp_path):
    """A small valid bundle: device errors come after the bundle is opened and before anything is pushed."""
    from edgebit.bundle import BundleWriter

    with BundleWriter(tmp_path / "b") as writer:
        writer.path("runtimes/tvm/model.conf").write_text("inputs tokens\n")
        writer.commit({"model": {"family": "bitnet", "config": {"vocab_size": 16}, "max_seq_len": 8},
                       "target": {"name": "arm64", "triple": "aarch64-linux-gnu", "debian_arch": "arm64",
                                  "loader": "ld-linux-aarch64.so.1"},
                       "runtimes": {"tvm": {"version": "0"}}})
    return tmp_path / "b"


@pytest.mark.parametrize("spec, fragments", [
    ("adb:no-such-phone", ("adb:no-such-phone", "no such device", "connected: none")),
    ("adb", ("0 devices connected", "adb:SERIAL")),
    ("adb:", ("expected adb, adb:SERIAL or adb:HOST:PORT",)),
    ("adb:127.0.0.1:1", ("adb:127.0.0.1:1", "cannot connect")),
])
def test_unknown_or_missing_devices_are_one_clear_line(bundle, adb_env, spec, fragments):
    result = subprocess.run([EDGEBIT, "validate", str(bundle), "-d", spec], capture_output=True, text=True,
                            env=adb_env, timeout=120)
    assert_user_error(result, *fragments)
