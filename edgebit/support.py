"""The support matrix (target x runtime x model family), computed from the backends' own checks.

The README's table is this module's Markdown output (a test keeps them equal), so it cannot drift from the code.
"""

from __future__ import annotations

from edgebit import backends
from edgebit.targets import all_targets

YES = "yes"


def matrix_rows() -> list[dict]:
    """One row per (target, runtime): for each family None when supported, else the reason."""
    return [{"target": target.name, "runtime": runtime,
             **{family: backends.unsupported_reason(runtime, target, family) for family in backends.FAMILIES}}
            for target in all_targets().values() for runtime in backends.RUNTIMES]


def matrix_markdown(rows: list[dict]) -> str:
    """A Markdown table with numbered footnotes for the reasons."""
    reasons: list[str] = []

    def cell(reason: str | None) -> str:
        if reason is None:
            return YES
        if reason not in reasons:
            reasons.append(reason)
        return f"no ({reasons.index(reason) + 1})"

    lines = ["| target | runtime | " + " | ".join(backends.FAMILIES) + " |",
             "|---|---|" + "---|" * len(backends.FAMILIES)]
    lines += [f"| {row['target']} | {row['runtime']} | " + " | ".join(cell(row[f]) for f in backends.FAMILIES) + " |"
              for row in rows]
    lines += [""] + [f"({i}) {reason}" for i, reason in enumerate(reasons, 1)] if reasons else []
    return "\n".join(lines) + "\n"
