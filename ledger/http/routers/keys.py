"""Public keys for offline verification of grants, decisions and checkpoints."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ledger.http.deps import StateDep

router = APIRouter(tags=["keys"])


@router.get("/.well-known/jwks.json")
def jwks(state: StateDep) -> dict[str, Any]:
    """Every signing key, active and rotated, so old grants stay verifiable."""
    keys = [k.jwk().as_dict(private=False) for k in state.keys.signing.values()]
    return {"keys": keys}
