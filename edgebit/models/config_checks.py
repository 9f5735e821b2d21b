"""Type and range checks of a model config's fields, shared by the families' config classes.

A config.json with a string, a fraction, a negative or an absurd size fails here with one ``ValueError`` that names
the field; the checkpoint loaders turn it into a :class:`~edgebit.errors.CheckpointError`. Without these checks a
bad value surfaced as a TypeError deep inside torch, or allocated gigabytes.
"""

from __future__ import annotations

import math

MAX_SIZE = 2 ** 31 - 1  # no size or count of a real model comes near; beyond it int32 index arithmetic overflows


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_sizes(config, *names: str) -> None:
    """Each field is a whole number from 1 to MAX_SIZE (a dimension, a count)."""
    for name in names:
        value = getattr(config, name)
        if not _is_int(value) or not 1 <= value <= MAX_SIZE:
            raise ValueError(f"{name} must be a whole number from 1 to {MAX_SIZE}, not {value!r}")


def check_token_ids(config, *names: str) -> None:
    """Each field is a token id (a whole number from 0) or null."""
    for name in names:
        value = getattr(config, name)
        if value is not None and (not _is_int(value) or not 0 <= value <= MAX_SIZE):
            raise ValueError(f"{name} must be a token id (a whole number from 0) or null, not {value!r}")


def check_positive_floats(config, *names: str) -> None:
    """Each field is a finite number above 0; stored as a float."""
    for name in names:
        value = getattr(config, name)
        try:
            number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
        except OverflowError:  # an integer beyond float's range
            number = math.inf
        if not math.isfinite(number) or number <= 0:
            raise ValueError(f"{name} must be a finite number above 0, not {value!r}")
        setattr(config, name, number)


def check_number_pair(config, name: str) -> tuple[float, float]:
    """The field is two numbers [low, high] with low <= high (each may be infinite); returned as floats."""
    value = getattr(config, name)
    try:
        low, high = (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
                     for v in value)
    except (TypeError, ValueError, OverflowError):  # not a pair, or an integer beyond float's range
        low = high = math.nan
    if math.isnan(low) or math.isnan(high) or low > high:
        raise ValueError(f"{name} must be two numbers [low, high] with low <= high, not {value!r}")
    return low, high


def check_flags(config, *names: str) -> None:
    """Each field is true or false."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, not {value!r}")


def check_choice(config, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(config, name)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
