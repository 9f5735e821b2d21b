"""The README's support matrix is the output of `edgebit support-matrix --markdown`, and the matrix says what the
backends can do (every runtime of the host's target is supported; riscv64 has TVM)."""

import re
from pathlib import Path

from cli_helpers import run_cli

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_matrix_is_the_command_output():
    printed = run_cli("support-matrix", "--markdown", check=True).stdout
    embedded = re.search(r"<!-- support-matrix:begin -->\n(.*)<!-- support-matrix:end -->", README.read_text(), re.S)
    assert embedded, "README lacks the support-matrix markers"
    assert embedded.group(1) == printed, "README's support matrix is stale: paste `edgebit support-matrix --markdown`"


def test_matrix_rows_cover_every_target_and_runtime():
    import json

    rows = json.loads(run_cli("support-matrix", "--json", check=True).stdout)
    cells = {(r["target"], r["runtime"]): r for r in rows}
    assert cells[("x86_64", "executorch")]["bitnet"] is None and cells[("arm64", "onnx-portable")]["bimamba"] is None
    assert cells[("riscv64", "tvm")]["bimamba"] is None
    assert "riscv64" in cells[("riscv64", "executorch")]["bitnet"]
