"""W3C PROV-JSON of a lineage, built with the ``prov`` package so any PROV tool reads it.

Mapping: each log entry is a PROV activity (its type and time); its actor is an agent
associated with it; everything it names is an entity the activity used, except the kind
of thing the event is about by name (``consent.recorded`` makes a consent,
``grant.issued`` a grant, ``model.registered`` a model), which the activity generated.
Subjects appear only as their salted commitments, never as identifiers.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from prov.model import ProvDocument

from ledger.audit.queries import Lineage

NAMESPACE = "https://ledger.invalid/ns#"


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def to_prov(lineage: Lineage, origin: str) -> ProvDocument:
    doc = ProvDocument()
    doc.set_default_namespace(NAMESPACE)
    doc.add_namespace("ledger", NAMESPACE)
    entities: dict[str, Any] = {}
    agents: dict[str, Any] = {}
    for event in lineage.events:
        when = _time(event.time)
        activity = doc.activity(
            f"ledger:entry-{event.seq}",
            startTime=when,
            endTime=when,
            other_attributes={
                "ledger:eventType": event.type,
                "ledger:logIndex": event.seq,
                "ledger:log": origin,
            },
        )
        if event.actor:
            if event.actor not in agents:
                agents[event.actor] = doc.agent(f"ledger:principal-{event.actor}")
            doc.wasAssociatedWith(activity, agents[event.actor])
        made = event.type.split(".", 1)[0]
        for ref in sorted(event.refs):
            kind, value = ref.split(":", 1)
            if ref not in entities:
                entities[ref] = doc.entity(
                    f"ledger:{kind}-{value}", {"ledger:kind": kind, "ledger:ref": ref}
                )
            if kind == made:
                doc.wasGeneratedBy(entities[ref], activity, when)
            else:
                doc.used(activity, entities[ref], when)
    return doc


def prov_json(lineage: Lineage, origin: str) -> dict[str, Any]:
    text = to_prov(lineage, origin).serialize(format="json")
    result: dict[str, Any] = json.loads(text or "{}")
    return result
