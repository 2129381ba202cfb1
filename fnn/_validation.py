"""Shared helpers for clear error messages (internal)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def unknown_name_error(kind: str, name: str, known: Iterable[str]) -> ValueError:
    """A ValueError for an unknown identifier, with a "did you mean" suggestion.

    >>> str(unknown_name_error("loss", "mse_", ["mse", "mae"]))
    "Unknown loss 'mse_'. Did you mean 'mse'? Known: mae, mse"
    """
    known = sorted(set(known))
    close = difflib.get_close_matches(str(name).lower(), known, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(f"Unknown {kind} {name!r}.{hint} Known: {', '.join(known)}")


def lookup(kind: str, name: str, table: dict):
    """Return ``table[name]`` (case-insensitive) or raise `unknown_name_error`."""
    if not isinstance(name, str):
        raise TypeError(
            f"{kind} must be a string identifier or a callable, got {type(name).__name__}"
        )
    key = name.lower()
    if key not in table:
        raise unknown_name_error(kind, name, table)
    return table[key]
