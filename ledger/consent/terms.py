"""A consent version's terms (decision, purposes, modifiers, scope) as one short key.

Evaluating a request over hundreds of thousands of subjects groups them by what their
consents say. Comparing and fetching the JSON of every consent for that costs more than
everything else in the query (PostgreSQL turns each JSONB value back into text), so each
version row carries this key, computed once when the row is written, and the JSON is read
once per distinct key. Two versions have the same key exactly when their terms are the same
JSON values (canonical form: RFC 8785), whatever order or spacing they were stored in.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

from ledger.canonical import canonical


def terms_key(decision: str, purposes: Any, modifiers: Any, scope: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``[decision, purposes, modifiers, scope]``.

    An import of 100k consents holds a handful of distinct texts, and the canonical form
    is computed in pure Python, so keys are remembered per text."""
    return _key(decision, tuple(purposes), tuple(modifiers), json.dumps(scope, sort_keys=True))


@lru_cache(maxsize=4096)
def _key(decision: str, purposes: tuple[str, ...], modifiers: tuple[str, ...], scope: str) -> str:
    text = canonical([decision, list(purposes), list(modifiers), json.loads(scope)])
    return hashlib.sha256(text).hexdigest()
