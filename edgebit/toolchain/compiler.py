"""Running a target's C/C++ compiler for edgebit's own builds (runners, custom-op libraries, kernel objects): the
one check that it is installed and the one way a failed build is reported (the first error line, not pages of
output)."""

from __future__ import annotations

import shutil
import subprocess

from edgebit.errors import EdgebitError
from edgebit.targets import Target
from edgebit.toolchain.doctor import missing_tool_message


def require_compiler(target: Target) -> None:
    if shutil.which(target.cxx) is None:
        raise EdgebitError(missing_tool_message(target.cxx))


def compile_or_raise(argv: list[str], what: str) -> None:
    """Run ``argv``; on failure raise "building <what> failed: <first error line>"."""
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if "error" in line] or result.stderr.splitlines()
        raise EdgebitError(f"building {what} failed: {errors[0] if errors else 'no output'}")
