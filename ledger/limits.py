"""What input may be: the bounds every front door applies before a value reaches a parser
or a database, so the same input gets the same refusal on SQLite and PostgreSQL.

Pure (no pydantic, no web framework): the SDK's token checks use it too. The pydantic
field types built on these rules are in ``ledger.fields``; the HTTP edge that refuses NUL
and malformed JSON for every route is ``ledger.http.middleware``.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from itertools import accumulate

# The largest integer either database stores (PostgreSQL BIGINT, SQLite INTEGER).
MAX_INT = 2**63 - 1
# JSON deeper than this is refused before it is parsed: no API shape nests beyond a dozen
# levels, and a deep enough document exhausts the parser's recursion (FHIR included).
MAX_JSON_DEPTH = 64
# Instants outside these years are mistakes (and years 1 and 9999 overflow once converted
# to UTC); consent history, as_of and validity periods all fall well inside.
FIRST_YEAR, LAST_YEAR = 1900, 2999

# Categories never allowed in identifiers and names: controls, format characters (bidi
# overrides, zero-width spaces), surrogates, private use, line and paragraph separators.
LABEL_REFUSED = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
# Free text may hold tabs and line breaks, never other controls.
TEXT_ALLOWED = frozenset("\t\n\r")

_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_too_deep(data: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``data`` (JSON text, possibly malformed) nests arrays and objects deeper
    than ``limit``: a scan of the raw bytes, cheap enough to run before any parser."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    # Escapes out first, then strings hold no backslash: two linear passes, no backtracking.
    brackets = _STRING.sub(b"", _ESCAPE.sub(b"", raw)).translate(None, _BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > limit


def label_problem(value: str) -> str | None:
    """Why ``value`` cannot be an identifier or a name, or None when it can."""
    if value.isascii() and not _ASCII_CONTROL.search(value):
        return None  # the common case, without a Python loop
    for char in value:
        category = unicodedata.category(char)
        if category in LABEL_REFUSED:
            return f"must be printable text (it holds U+{ord(char):04X}, category {category})"
    return None


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be free text (tabs and line breaks allowed), or None."""
    if value.isascii() and not _TEXT_CONTROL.search(value):
        return None
    for char in value:
        category = unicodedata.category(char)
        if (category == "Cc" and char not in TEXT_ALLOWED) or category == "Cs":
            return f"must not hold control characters (it holds U+{ord(char):04X})"
    return None


def instant_problem(value: datetime) -> str | None:
    """Why ``value`` is no usable instant (outside the years allowed, in UTC), or None."""
    try:
        moment = value.astimezone(UTC) if value.tzinfo is not None else value
    except OverflowError:
        return f"must fall within the years {FIRST_YEAR} to {LAST_YEAR}"
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        return f"must fall within the years {FIRST_YEAR} to {LAST_YEAR}"
    return None
