"""Who may see a request, grant or model: "a pipeline sees only its own".

Stewards, auditors and admins oversee every pipeline's work; a pipeline sees only what it
filed or was issued. One rule, used by every route and page that shows such things.
"""

from __future__ import annotations

from ledger.errors import Forbidden
from ledger.principals.keys import Caller
from ledger.principals.models import Role

OVERSEERS = (Role.steward, Role.auditor, Role.admin)


def oversees(caller: Caller) -> bool:
    return caller.has(*OVERSEERS)


def ensure_visible(caller: Caller, owner_id: str, refusal: str) -> None:
    """Refuse with ``refusal`` unless ``caller`` oversees or is the owning pipeline."""
    if not oversees(caller) and caller.id != owner_id:
        raise Forbidden(refusal)


def owner_filter(caller: Caller) -> str | None:
    """The pipeline id a listing must be limited to, or None for overseers."""
    return None if oversees(caller) else caller.id
