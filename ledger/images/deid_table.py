"""Table E.1-1 of DICOM PS3.15 Annex E as data: which action applies to which attribute,
and the CID 7050 codes that say which profile and options were applied.

The 2026c edition (``TABLE_EDITION``) is the 2024b table in
``data/confidentiality_profile_attributes.json`` (621 attributes, the basic profile's
action and each option's) plus the 35 attributes added since, in
``data/confidentiality_profile_additions_2026c.json`` (basic profile action only: an
option leaves them at it, which removes more, never less). Licences lie beside the files.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from ledger.images.deid_options import Option
from ledger.images.deid_text import UNLISTED_FREE_TEXT

TABLE_EDITION = "2026c"
TABLES = (
    "data/confidentiality_profile_attributes.json",  # 2024b
    "data/confidentiality_profile_additions_2026c.json",  # added by 2026c
)
# Options under which free text is cleaned rather than removed.
CLEANING = frozenset({Option.clean_descriptors, Option.clean_structured_content})

# CID 7050 codes for what was applied.
CID7050 = {
    None: ("113100", "Basic Application Confidentiality Profile"),
    Option.retain_long_modified_dates: (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    Option.retain_patient_characteristics: ("113108", "Retain Patient Characteristics Option"),
    Option.retain_device_identity: ("113109", "Retain Device Identity Option"),
    Option.retain_institution_identity: ("113112", "Retain Institution Identity Option"),
    Option.clean_descriptors: ("113105", "Clean Descriptors Option"),
    Option.clean_structured_content: ("113104", "Clean Structured Content Option"),
    Option.clean_graphics: ("113103", "Clean Graphics Option"),
    Option.retain_safe_private: ("113111", "Retain Safe Private Option"),
}


@cache
def table_rows() -> tuple[dict[str, str], ...]:
    rows: list[dict[str, str]] = []
    for name in TABLES:
        rows += json.loads(resources.files("ledger.images").joinpath(name).read_text())
    return tuple(rows)


def _tag(row: dict[str, str]) -> int | None:
    """The row's tag; None for the ``xx`` groups (curves, overlays: handled as groups) and
    private ranges (handled by parity)."""
    tag_id = row["id"].lower()
    if len(tag_id) != 8 or "x" in tag_id:
        return None
    return int(tag_id, 16)


@cache
def rules(options: frozenset[Option]) -> dict[int, str]:
    """Tag → action for a set of options (a clean or keep option wins over the basic
    profile). Free text the table does not list (``UNLISTED_FREE_TEXT``) is added with its
    basic action, or cleaned under a cleaning option."""
    out: dict[int, str] = {}
    for row in table_rows():
        tag = _tag(row)
        if tag is None:
            continue
        action = compound(row["basicProfile"])
        chosen = [row[o.value] for o in options if o.value in row]
        if "C" in chosen:
            action = "C"
        elif "K" in chosen:
            action = "K"
        out[tag] = action
    cleaning = bool(options & CLEANING)
    for tag, basic in UNLISTED_FREE_TEXT.items():
        out.setdefault(tag, "C" if cleaning else basic)
    return out


@cache
def descriptor_tags() -> frozenset[int]:
    """The free-text attributes: those Clean Descriptors cleans, and SR Text Value."""
    tags = {_tag(r) for r in table_rows() if r.get(Option.clean_descriptors.value)}
    return frozenset({t for t in tags if t is not None} | set(UNLISTED_FREE_TEXT))


def compound(action: str) -> str:
    """A compound action (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``, ``X/Z/U*``) depends on the
    IOD's type for the attribute, which a generic engine does not know: take the choice that
    keeps the attribute present (``D`` over ``Z`` over ``X``; ``U`` for ``U*``)."""
    if "/" not in action:
        return action
    parts = action.rstrip("*").split("/")
    for preferred in ("U", "D", "Z", "X"):
        if preferred in parts:
            return preferred
    return parts[0]
