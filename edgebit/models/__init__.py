"""Model families, one package each (``edgebit/models/<family>/``), and the registry every stage asks.

Adding a family: a new package whose ``__init__`` defines ``FAMILY`` (an :class:`edgebit.models.family.Family`), and
one line in :data:`FAMILY_PACKAGES`. No other module compares family names.
"""

from __future__ import annotations

import importlib
from functools import cache

from edgebit.errors import EdgebitError

FAMILY_PACKAGES = (
    "edgebit.models.bitnet",
    "edgebit.models.bimamba",
)


@cache
def families() -> dict:
    """name -> Family, in registry order (imported on first use: the packages pull in torch and the operators)."""
    found = {}
    for package in FAMILY_PACKAGES:
        family = importlib.import_module(package).FAMILY
        found[family.name] = family
    return found


def family_names() -> tuple[str, ...]:
    return tuple(families())


def family_named(name: str):
    """The Family called ``name``; a user error naming the known ones otherwise."""
    try:
        return families()[name]
    except KeyError:
        raise EdgebitError(f"unknown model family {name!r} (known: {', '.join(families())})") from None


def family_of(model):
    """The Family of a loaded model (its class's ``family`` attribute)."""
    return family_named(model.family)


def summarize(model) -> dict:
    """What ``edgebit inspect`` reports for a loaded model (its family's counts and sizes)."""
    return family_of(model).summarize(model)
