"""RFC 8785 canonical JSON: the one byte form of a value that the log hashes, tokens and
idempotency keys compare, and auditors recompute.

Pure: imports no web framework or database, so the SDK and offline verifiers can use it.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

__all__ = ["canonical"]

_SAFE_INT = 2**53


def _plain(value: Any) -> bool:
    """True when stdlib ``json`` already writes RFC 8785 output for ``value``: no floats,
    integers within IEEE-754 precision, ASCII keys (so code-point order equals the RFC's
    UTF-16 order). Iterative: this runs for every log entry."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is int:
            if not -_SAFE_INT < item < _SAFE_INT:
                return False
        elif kind is dict:
            for key, child in item.items():
                if type(key) is not str or not key.isascii():
                    return False
                if type(child) is not str and child is not None:
                    stack.append(child)
        elif kind is list or kind is tuple:
            stack.extend(item)
        else:
            return False
    return True


def canonical(value: Any) -> bytes:
    """RFC 8785 canonical JSON: one byte string per value, whoever serialises it.

    The common case (our own entries) goes through the C ``json`` encoder, which writes
    the same bytes for such values; anything else (floats, non-ASCII keys, lone
    surrogates) goes to the reference ``rfc8785`` implementation. A property test checks
    that the two agree.
    """
    if _plain(value):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            pass
    return rfc8785.dumps(value)
