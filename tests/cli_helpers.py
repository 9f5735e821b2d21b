import subprocess
import sys
from pathlib import Path

EDGEBIT = str(Path(sys.executable).parent / "edgebit")


def run_cli(*args, check=False):
    result = subprocess.run([EDGEBIT, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"edgebit {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result


def assert_user_error(result, *fragments):
    """One line on stderr, no traceback, exit status 2, mentioning each fragment."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
