"""edgebit doctor names every tool with an install command, and missing-tool errors carry that command."""

import json

from cli_helpers import run_cli
from edgebit.toolchain.doctor import missing_tool_message


def test_doctor_reports_tools():
    result = run_cli("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert {"g++", "aarch64-linux-gnu-g++", "riscv64-linux-gnu-g++", "python:tvm"} <= set(checks)
    assert result.returncode == (0 if all(c["ok"] for c in checks.values()) else 1)
    assert all(c["fix"] for c in checks.values() if not c["ok"])


def test_missing_tool_message_says_how_to_install():
    assert "apt-get install -y g++-riscv64-linux-gnu" in missing_tool_message("riscv64-linux-gnu-g++")
