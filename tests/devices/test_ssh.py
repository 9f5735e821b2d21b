"""ssh:// devices against a real OpenSSH server on 127.0.0.1 (tests/sshd.py): an x86_64 bundle validates and
generates over SSH exactly as on the local device, and each fault is one clear line, exit status 2, and nothing
left on the device."""

import hashlib
import json
import os
import subprocess
import time

import pytest

from cli_helpers import EDGEBIT, assert_user_error
from sshd import LocalSshd

pytestmark = pytest.mark.slow
PROMPT = "The Python interpreter"


def cli(*args, env=None, timeout=600):
    return subprocess.run([EDGEBIT, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("ssh") / "demo-x86_64.bundle"
    result = cli("export", "demo", "-t", "x86_64", "-o", out)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def sshd(tmp_path):
    server = LocalSshd(tmp_path / "sshd", tmpfs=tmp_path / "full")
    (tmp_path / "remote").mkdir()
    yield server
    server.stop()


def leftovers(sshd, directory) -> list[str]:
    """edgebit-* directories the device still holds under ``directory`` (asked over ssh, as a user would)."""
    return sshd.ssh(f"ls -d {directory}/edgebit-* 2>/dev/null").stdout.split()


def test_validate_and_generate_over_ssh_equal_the_local_device(bundle, sshd, tmp_path):
    remote = tmp_path / "remote"
    over_ssh = cli("validate", bundle, "-d", f"{sshd.spec}{remote}", "--json", env=sshd.env)
    local = cli("validate", bundle, "-d", "local", "--json")
    assert over_ssh.returncode == 0 and local.returncode == 0, over_ssh.stderr + local.stderr
    ssh_report, local_report = json.loads(over_ssh.stdout), json.loads(local.stdout)
    assert ssh_report["passed"] and ssh_report["device"] == f"{sshd.spec}{remote} (amd64)"
    for a, b in zip(ssh_report["runtimes"], local_report["runtimes"]):
        assert a["max_abs_error"] == b["max_abs_error"] and a["device_perplexity"] == b["device_perplexity"]
    generated = [cli("generate", bundle, "-d", device, "-p", PROMPT, "-n", "24", env=sshd.env).stdout.splitlines()[0]
                 for device in (f"{sshd.spec}{remote}", "local")]
    assert generated[0] == generated[1] and len(generated[0]) > len(PROMPT)
    assert leftovers(sshd, remote) == []


def test_two_devices_validate_in_parallel(bundle, sshd):
    result = cli("validate", bundle, "-d", sshd.spec, "-d", "local", "--json", env=sshd.env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] and [r["device"] for r in report["results"]] == [f"{sshd.spec} (amd64)", "local (amd64)"]
    first, second = report["results"]
    # The sessions overlap in time: each device started before the other finished.
    assert first["started"] < second["started"] + second["seconds"]
    assert second["started"] < first["started"] + first["seconds"]


def test_a_bundle_for_another_architecture_is_refused_before_pushing(bundle, sshd, tmp_path):
    other = tmp_path / "arm64.bundle"
    subprocess.run(["cp", "-a", str(bundle), str(other)], check=True)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["target"].update(name="arm64", debian_arch="arm64")
    (other / "manifest.json").write_text(json.dumps(manifest))
    result = cli("validate", other, "-d", f"{sshd.spec}{tmp_path / 'remote'}", env=sshd.env)
    assert_user_error(result, "built for arm64", "runs amd64")
    assert leftovers(sshd, tmp_path / "remote") == []


@pytest.mark.parametrize("fault, message", [
    ("stopped", "connection refused"),
    ("wrong key", "refused the login"),
    ("unknown host key", "host key is unknown or has changed"),
    ("timeout", "did not finish within"),
    ("full disk", "disk is full"),
])
def test_each_fault_is_one_line_and_leaves_nothing(bundle, sshd, tmp_path, fault, message):
    remote = tmp_path / ("full" if fault == "full disk" else "remote")
    args = ["validate", bundle, "-d", f"{sshd.spec}{remote}"]
    if fault == "stopped":
        sshd.stop()
    elif fault == "wrong key":
        from sshd import keygen

        keygen(tmp_path / "stranger")
        sshd.write_client_config(tmp_path / "stranger", sshd.root / "known_hosts")
    elif fault == "unknown host key":
        (tmp_path / "empty_known_hosts").write_text("")
        sshd.write_client_config(sshd.root / "user_key", tmp_path / "empty_known_hosts")
    elif fault == "timeout":
        args += ["--timeout", "0.001"]  # less than any run takes: the runner is stopped on the device
    result = cli(*args, env=sshd.env)
    assert_user_error(result, sshd.spec, message)
    if fault != "stopped":
        sshd.write_client_config(sshd.root / "user_key", sshd.root / "known_hosts")
        assert leftovers(sshd, remote) == []


def test_the_device_checks_what_arrived_and_reports_signals(sshd, tmp_path):
    """A file altered on the device after the push is caught by the device's own sha256sum; a runner killed by a
    signal is reported as such; a remote command that outlives its timeout is killed on the device."""
    from edgebit.devices import open_device

    os.environ["EDGEBIT_SSH_CONFIG"] = str(sshd.config)
    device = open_device(f"{sshd.spec}{tmp_path / 'remote'}")
    try:
        payload = tmp_path / "payload"
        payload.mkdir()
        (payload / "weights.bin").write_bytes(os.urandom(4096))
        root = device.push(payload)
        digests = {"weights.bin": hashlib.sha256((payload / "weights.bin").read_bytes()).hexdigest()}
        device.verify_files(root, digests)
        device.run(["sh", "-c", f"printf x >> {root}/weights.bin"], 30)
        with pytest.raises(Exception, match="arrived corrupted.*weights.bin"):
            device.verify_files(root, digests)
        assert device.run(["sh", "-c", "kill -SEGV $$"], 30).signal_name == "SIGSEGV"
        start = time.monotonic()
        with pytest.raises(Exception, match="did not finish within 1 s"):
            device.run(["sleep", "61"], 1)
        assert time.monotonic() - start < 30
        assert sshd.ssh("pgrep -f 'slee[p] 61' || echo none").stdout.strip() == "none"
    finally:
        device.cleanup()
        del os.environ["EDGEBIT_SSH_CONFIG"]
    assert leftovers(sshd, tmp_path / "remote") == []


def test_a_device_lost_mid_run_is_one_clear_error(sshd, tmp_path):
    from edgebit.devices import DeviceError, open_device

    os.environ["EDGEBIT_SSH_CONFIG"] = str(sshd.config)
    try:
        device = open_device(f"{sshd.spec}{tmp_path / 'remote'}")
        # The board goes away: the server and every connection it serves die at once.
        pid = sshd.process.pid
        killer = subprocess.Popen(["sh", "-c", f"sleep 1; pkill -KILL -P {pid}; kill -9 {pid}"])
        with pytest.raises(DeviceError, match="connection was lost|cannot be reached|connection refused|ssh failed"):
            device.run(["sleep", "20"], 60)
        killer.wait()
        device.cleanup()  # the device is gone: clean-up gives up quietly
    finally:
        del os.environ["EDGEBIT_SSH_CONFIG"]
