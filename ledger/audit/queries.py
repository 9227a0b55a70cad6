"""Auditor queries answered from the log itself, the one record nobody can quietly edit.

Lineage follows ``log_refs``: every entry is indexed under what it names (``subject:``,
``grant:``, ``model:``, ...). A model's lineage is followed transitively to the grants,
requests and datasets it names, so "what was this model trained on, under which decision"
comes back in one call. Subjects are never followed transitively: a dataset names
thousands of them and an auditor asks about subjects one at a time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.consent import facts
from ledger.consent.in_force import effective_consents
from ledger.consent.models import Subject
from ledger.consent.purposes import Purpose
from ledger.errors import Gone, InvalidInput, NotFound
from ledger.images.models import DatasetImage, Image
from ledger.provenance.commitments import SubjectSalt, commit_with
from ledger.provenance.log import REF_KEYS, refs_of
from ledger.provenance.models import LogEntry, LogRef

KINDS = ("subject", "grant", "model", "dataset", "request", "consent", "image")
FOLLOW = {"grant", "request", "dataset", "model"}
MAX_ENTRIES = 10_000
MAX_HOPS = 4


@dataclass(frozen=True)
class Event:
    seq: int
    type: str
    time: str
    actor: str | None
    data: dict[str, Any]

    @property
    def refs(self) -> set[str]:
        return refs_of(self.data)


@dataclass
class Lineage:
    ref: str
    events: list[Event] = field(default_factory=list)
    truncated: bool = False

    def by_category(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self.events:
            category = e.type.split(".", 1)[0]
            counts[category] = counts.get(category, 0) + 1
        return counts


def _event(raw: bytes) -> Event:
    obj = json.loads(raw)
    return Event(obj["seq"], obj["type"], obj["time"], obj.get("actor"), obj.get("data") or {})


def subject_ref(session: Session, subject_id: str) -> str:
    """The ref a subject's entries carry; Gone once the subject's salt is erased."""
    salt = session.get(SubjectSalt, subject_id)
    if salt is None:
        if session.get(Subject, subject_id) is None:
            raise NotFound(f"no subject {subject_id}")
        raise Gone("this subject was erased: its log entries can no longer be linked to it")
    return f"subject:{commit_with(bytes(salt.salt), subject_id)}"


def _fetch(session: Session, refs: set[str], limit: int) -> list[Event]:
    rows = session.execute(
        select(col(LogEntry.entry))
        .where(col(LogEntry.seq).in_(select(col(LogRef.seq)).where(col(LogRef.ref).in_(refs))))
        .order_by(col(LogEntry.seq))
        .limit(limit)
    ).scalars()
    return [_event(bytes(raw)) for raw in rows]


def lineage(session: Session, kind: str, value: str) -> Lineage:
    """Every entry about ``kind:value``; for grants, models and datasets also the entries
    about the grants, requests, datasets and models those entries name."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown lineage kind {kind!r}; one of {', '.join(KINDS)}")
    ref = subject_ref(session, value) if kind == "subject" else f"{kind}:{value}"
    result = Lineage(ref)
    seen: set[str] = set()
    frontier = {ref}
    if kind == "subject":
        # Decisions name datasets, not subjects: follow the datasets holding the subject's
        # images to the requests, grants and models that used them.
        frontier |= {f"dataset:{d}" for d in _datasets_of(session, value)}
    events: dict[int, Event] = {}
    for _ in range(MAX_HOPS if kind in FOLLOW or kind == "subject" else 1):
        fetched = _fetch(session, frontier, MAX_ENTRIES + 1)
        seen |= frontier
        for event in fetched:
            events[event.seq] = event
        if len(events) > MAX_ENTRIES:
            result.truncated = True
            break
        frontier = {
            r for e in fetched for r in e.refs if r.split(":", 1)[0] in FOLLOW and r not in seen
        }
        if not frontier:
            break
    if not events:
        raise NotFound(f"the log holds nothing about {kind} {value}")
    ordered = sorted(events.values(), key=lambda e: e.seq)[:MAX_ENTRIES]
    if kind == "subject":
        ordered = [_only(e, ref.split(":", 1)[1]) for e in ordered]
    result.events = ordered
    return result


def _datasets_of(session: Session, subject_id: str) -> list[str]:
    rows = session.execute(
        select(col(DatasetImage.dataset_id))
        .join(Image, col(Image.id) == col(DatasetImage.image_id))
        .where(col(Image.subject_id) == subject_id)
        .distinct()
    ).scalars()
    return [str(d) for d in rows]


def _only(event: Event, commitment: str) -> Event:
    """A batch entry names many subjects; a subject's lineage shows only this one."""
    others = event.data.get("subjects")
    if not isinstance(others, list) or len(others) <= 1:
        return event
    data = {**event.data, "subjects": [commitment], "subjects_in_entry": len(others)}
    return Event(event.seq, event.type, event.time, event.actor, data)


__all__ = ["KINDS", "REF_KEYS", "Event", "Lineage", "lineage", "subject_ref"]


@dataclass(frozen=True)
class UnconsentedRelease:
    index: int
    time: str
    type: str
    grant_id: str | None
    purpose: str
    subject: str  # the commitment, as in the log
    reasons: list[str]


def releases_without_consent(session: Session) -> tuple[list[UnconsentedRelease], int]:
    """Release entries whose subject did not permit the purpose at the moment of release,
    as consent was known then (a withdrawal that came later is not a violation).

    Release entries (``release.*``) carry ``purpose`` and the released ``subject`` or
    ``subjects`` by commitment. Returns the violations (should be none) and how many
    (release, subject) pairs were checked.
    """

    by_commitment = {
        commit_with(bytes(salt), sid): sid
        for sid, salt in session.execute(select(col(SubjectSalt.subject_id), col(SubjectSalt.salt)))
    }
    found: list[UnconsentedRelease] = []
    checked = 0
    rows = session.execute(
        select(col(LogEntry.entry))
        .where(col(LogEntry.event_type).like("release.%"))
        .order_by(col(LogEntry.seq))
    ).scalars()
    for raw in rows:
        event = _event(bytes(raw))
        purpose = event.data.get("purpose")
        listed = event.data.get("subjects") or [event.data.get("subject")]
        commitments = [c for c in listed if isinstance(c, str)]
        if not isinstance(purpose, str) or not commitments:
            continue
        when = datetime.fromisoformat(event.time.replace("Z", "+00:00"))
        request = Purpose.parse(purpose)
        known = {c: by_commitment[c] for c in commitments if c in by_commitment}
        in_force = effective_consents(session, when, list(known.values()))
        for commitment, sid in known.items():
            checked += 1
            outcome = facts.decide(in_force.get(sid, []), request)
            if not outcome.permitted:
                found.append(
                    UnconsentedRelease(
                        event.seq,
                        event.time,
                        event.type,
                        event.data.get("grant_id"),
                        purpose,
                        commitment,
                        outcome.reasons,
                    )
                )
    return found, checked
