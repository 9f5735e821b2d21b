"""README.md's command list against the real CLI: every command and option it shows exists (`--help`), and the
plain (table) forms no other test prints: inspect, targets, support-matrix, doctor; generation on an emulated
device. The other forms are exercised elsewhere: inspect --json, convert, binarize, export -r all, validate --json,
run -r, bench, generate on a device (tests/cli/test_commands.py, test_convert.py, test_mamba_checkpoints.py,
test_tvm_deploy.py, ...)."""

import re
import shlex
from pathlib import Path

import pytest

from cli_helpers import run_cli

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_commands() -> list[list[str]]:
    """The `edgebit ...` lines of the README's code blocks, comments and [optional] brackets dropped."""
    lines = re.findall(r"^edgebit (.+?)(?:\s+#.*)?$", README.read_text(), flags=re.M)
    return [shlex.split(line.replace("[", " ").replace("]", " ")) for line in lines]


def command_path(words: list[str]) -> list[str]:
    """The (sub)command words: `vm start arm64` -> [vm, start]; none for edgebit's own options (`--version`)."""
    groups = {"vm"}
    if words[0].startswith("-"):
        return []
    return words[:2] if words[0] in groups else words[:1]


def test_readme_lists_commands():
    assert len(readme_commands()) >= 15


@pytest.mark.parametrize("words", readme_commands(), ids=lambda w: " ".join(w)[:60])
def test_every_readme_command_and_option_exists(words):
    path = command_path(words)
    result = run_cli(*path, "--help")
    assert result.returncode == 0, result.stderr
    helptext = re.sub(r"\s+", " ", result.stdout)
    for option in (w for w in words if w.startswith("-")):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", helptext), (option, path)


def test_version():
    from edgebit import __version__

    assert run_cli("--version", check=True).stdout.strip() == f"edgebit {__version__}"


def test_inspect_table():
    out = run_cli("inspect", "demo", check=True).stdout
    assert "(bitnet, layout edgebit)" in out and "6 layers" in out and "parameters" in out


def test_targets_table():
    out = run_cli("targets", check=True).stdout
    for name in ("x86_64", "arm64-dotprod", "riscv64", "rpi4", "rpi5"):
        assert name in out


def test_support_matrix_table():
    out = run_cli("support-matrix", check=True).stdout
    assert "riscv64" in out and "executorch" in out and "(1)" in out


def test_doctor_table():
    result = run_cli("doctor")
    assert result.returncode in (0, 1) and "tool" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.cross
@pytest.mark.qemu
def test_generate_on_emulated_arm64_equals_host(tmp_path):
    """Greedy and seeded sampling: the emulated arm64 device picks the tokens the host picks."""
    prompt = "A list is"
    bundle = tmp_path / "demo-arm64.bundle"
    run_cli("export", "demo", "--target", "arm64", "-o", bundle, "--max-seq-len", 32, check=True)
    for settings in (("--temperature", 0), ("--seed", 7, "--top-p", 0.9)):
        host = run_cli("generate", "demo", "--head", "int8", "--kv-cache", "fp16", "--prompt", prompt, "-n", 8,
                       *settings, check=True).stdout
        device = run_cli("generate", bundle, "--device", "qemu", "--prompt", prompt, "-n", 8, "-r", "tvm",
                         *settings, check=True).stdout
        assert device.startswith(host), (settings, host, device)
