"""The demo model's training text: the reStructuredText sources of the Python documentation (Debian's
``python3.11-doc`` package, available offline from the distribution mirror), lightly stripped of markup.

Documents are split into train and held-out sets by file (every ``HELD_OUT_EVERY``-th file, sorted by path), so
held-out perplexity measures text the model never saw.
"""

from __future__ import annotations

import re
from pathlib import Path

HELD_OUT_EVERY = 20
SOURCES_GLOB = "**/_sources/**/*.txt"

_ROLE = re.compile(r":[a-zA-Z:]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
_LITERAL = re.compile(r"``([^`]*)``")
_LINK = re.compile(r"`([^`<]*?)\s*<[^>]*>`_+")
_DIRECTIVE = re.compile(r"^\s*\.\. [a-zA-Z:-]+::.*$|^\s*:[a-zA-Z -]+:(\s.*)?$|^\s*\.\. _[^:]*:\s*$|^\s*\.\.\s*$")
_ROLE_ESCAPE = re.compile(r"`\\ ?")  # `iterator`\s is RST for "iterators"
_RULE = re.compile(r"^([=\-~^*#+\"'`.])\1{3,}\s*$")


def clean_rst(text: str) -> str:
    """Turn reStructuredText into plain prose: roles and literals become their text, directives and rules go."""
    lines = []
    for line in text.splitlines():
        if _DIRECTIVE.match(line) or _RULE.match(line):
            continue
        line = _ROLE_ESCAPE.sub("`", line)
        line = _LINK.sub(r"\1", line)
        line = _ROLE.sub(r"\1", line)
        line = _LITERAL.sub(r"\1", line)
        lines.append(line.rstrip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def find_sources(root: Path) -> list[Path]:
    paths = sorted(Path(root).glob(SOURCES_GLOB))
    if not paths:
        raise FileNotFoundError(f"{root}: no Python documentation sources found ({SOURCES_GLOB}); "
                                "run scripts/fetch_corpus.sh first")
    return paths


def split_documents(root: Path) -> tuple[list[str], list[str]]:
    """(train documents, held-out documents), cleaned."""
    train, held_out = [], []
    for i, path in enumerate(find_sources(root)):
        text = clean_rst(path.read_text(encoding="utf-8", errors="replace"))
        (held_out if i % HELD_OUT_EVERY == 0 else train).append(text)
    return train, held_out
