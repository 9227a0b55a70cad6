"""The access-request lifecycle as explicit transitions, so an illegal move is refused with
a message instead of silently corrupting a request's history.

submitted → evaluated → approved | rejected;  approved → active → expired | revoked.
"""

from __future__ import annotations

import enum

from ledger.errors import Conflict


class Status(enum.StrEnum):
    submitted = "submitted"
    evaluated = "evaluated"
    approved = "approved"
    rejected = "rejected"
    active = "active"
    expired = "expired"
    revoked = "revoked"


ALLOWED: dict[Status, frozenset[Status]] = {
    Status.submitted: frozenset({Status.evaluated}),
    Status.evaluated: frozenset({Status.approved, Status.rejected}),
    Status.approved: frozenset({Status.active}),
    Status.active: frozenset({Status.expired, Status.revoked}),
    Status.rejected: frozenset(),
    Status.expired: frozenset(),
    Status.revoked: frozenset(),
}


def transition(current: Status | str, target: Status) -> Status:
    """Return ``target`` if the move is legal, else raise Conflict naming both states."""
    now = Status(current)
    if target not in ALLOWED[now]:
        raise Conflict(f"an access request that is {now} cannot become {target}")
    return target
