"""The support matrix (target x runtime x model family), computed from the runtimes' own checks.

The README's table is this module's Markdown output (a test keeps them equal), so it cannot drift from the code.
"""

from __future__ import annotations

from edgebit import runtimes
from edgebit.models import family_names
from edgebit.targets import all_targets

YES = "yes"


def matrix_rows() -> list[dict]:
    """One row per (target, runtime): for each family None when supported, else the reason."""
    return [{"target": target.name, "runtime": runtime,
             **{family: runtimes.unsupported_reason(runtime, target, family) for family in family_names()}}
            for target in all_targets().values() for runtime in runtimes.RUNTIMES]


def with_footnotes(rows: list[dict]) -> tuple[list[list[str]], list[str]]:
    """Table cells (target, runtime, one "yes" / "no (n)" per family) and the numbered reasons."""
    reasons: list[str] = []

    def cell(reason: str | None) -> str:
        if reason is None:
            return YES
        if reason not in reasons:
            reasons.append(reason)
        return f"no ({reasons.index(reason) + 1})"

    cells = [[row["target"], row["runtime"], *(cell(row[f]) for f in family_names())] for row in rows]
    return cells, reasons


def matrix_markdown(rows: list[dict]) -> str:
    cells, reasons = with_footnotes(rows)
    lines = ["| target | runtime | " + " | ".join(family_names()) + " |",
             "|---|---|" + "---|" * len(family_names())]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    if reasons:
        lines += ["", *(f"({i}) {reason}" for i, reason in enumerate(reasons, 1))]
    return "\n".join(lines) + "\n"
