"""Consent and provenance ledger for medical-imaging AI.

The package root stays light: ``import ledger`` loads nothing else, so the ``ledger`` command
and the pipeline SDK each pay only for what they use. ``ledger.LedgerClient`` is the SDK's
client (``ledger.client``: httpx and joserfc, nothing of the server), imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ledger.client import LedgerClient

__all__ = ["LedgerClient", "__version__"]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "LedgerClient":
        from ledger.client import LedgerClient

        return LedgerClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
