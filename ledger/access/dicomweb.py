"""Release over DICOMweb: QIDO-RS search and WADO-RS retrieve under a grant (PS3.18).

The same release, through the standard's read routes: every call opens the grant exactly
as ``release.manifest_page``, ``release.instance`` and ``release.download`` do (header,
own grant, not revoked), works only on the grant's frozen manifest, re-checks
eligibility now, logs what it releases (``release.prepare``: one ``release.instances``
entry per call) and logs refusals in a transaction of their own
(``release.logging_refusals``).

What a pipeline sees is de-identified: the manifest holds the de-identified SOP Instance
UIDs, and the study and series UIDs are derived on the fly by the same per-grant engine
(``release_profile.deidentifier``; ``Deidentifier.uid`` is the same HMAC the de-identified files
carry), so nothing new is stored and a study looks the same in a search and in its files.
Searches answer UIDs, modality, SOP class and counts only: no names, identifiers or dates
(dates are shifted per patient inside the files, and only there).

An instance no longer eligible (or quarantined by the index, as release refuses it) is
left out of searches and retrievals and counted in a ``Warning`` (PS3.18 §8.3.5.1 lets a
response carry warnings); it is never served. A study or series whose instances are all
no longer eligible answers 410, an instance 410, as ``release.instance`` does.

Calls read only the manifest rows of the studies they touch: the grant's study list is
read once per process (the manifest is frozen) and each call then reads its studies' rows
by the index on ``images.study_uid``; a study-level search reads studies a chunk at a
time until its page is full. This module holds the searches and what every call reads of
the manifest; ``dicomweb_retrieve`` the retrievals (WADO-RS files and metadata).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.orm import Session

from ledger.access.grant_manifest import STUDY_CACHE_GRANTS, Instance, placed, studies
from ledger.access.release import (
    Desk,
    OpenGrant,
    eligibility_now,
    logging_refusals,
    may_show_text,
    open_grant,
)
from ledger.access.release_profile import deidentifier
from ledger.errors import InvalidInput, NotFound
from ledger.images.deid import Deidentifier

Level = Literal["studies", "series", "instances"]

STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
SOP_CLASS_UID, MODALITY, MODALITIES_IN_STUDY = "00080016", "00080060", "00080061"
STUDY_SERIES, STUDY_INSTANCES, SERIES_INSTANCES = "00201206", "00201208", "00201209"

# Query keys a search matches on (single-value or UID-list matching), by keyword and tag.
MATCH_KEYS = {
    "StudyInstanceUID": STUDY_UID,
    "SeriesInstanceUID": SERIES_UID,
    "SOPInstanceUID": SOP_UID,
    "SOPClassUID": SOP_CLASS_UID,
    "Modality": MODALITY,
    "ModalitiesInStudy": MODALITIES_IN_STUDY,
}
IGNORED_KEYS = {"includefield", "fuzzymatching"}
MAX_LIMIT = 10_000
SEARCH_CHUNK = 200  # studies read at a time by a study-level search


@dataclass(frozen=True)
class Row:
    """A manifest instance with its de-identified place in the study hierarchy."""

    instance: Instance
    study: str
    series: str
    sop_class: str
    modality: str
    may_show_text: bool  # release's quarantine rule, from the index


@dataclass
class Found:
    """A search's matches as DICOM JSON, and what was left out as no longer eligible."""

    matches: list[dict[str, Any]]
    left_out: int
    warnings: list[str] = field(default_factory=list)


def study_index(session: Session, engine: Deidentifier, grant_id: str) -> dict[str, str]:
    """The grant's studies by de-identified Study Instance UID (to their original UIDs),
    in manifest order; kept per grant and process, as the frozen manifest's study list is
    (``grant_manifest.studies``), so a call maps a UID without reading the manifest."""
    probe = engine.uid(_PROBE)  # the engine's key: a rotated master key maps anew
    with _index_lock:
        cached = _index_cache.get(grant_id)
        if cached is not None and cached[0] == probe:
            _index_cache.move_to_end(grant_id)
            return cached[1]
    index = {engine.uid(study): study for study in studies(session, grant_id)}
    with _index_lock:
        _index_cache[grant_id] = (probe, index)
        while len(_index_cache) > STUDY_CACHE_GRANTS:
            _index_cache.popitem(last=False)
    return index


_PROBE = "ledger-dicomweb-study-index"
_index_cache: OrderedDict[str, tuple[str, dict[str, str]]] = OrderedDict()
_index_lock = threading.Lock()


def rows_of(
    session: Session, engine: Deidentifier, grant_id: str, originals: Sequence[str]
) -> list[Row]:
    """The manifest rows of the studies ``originals`` only (an indexed read)."""
    return [
        Row(
            p.instance,
            engine.uid(p.study_uid),
            engine.uid(p.series_uid),
            p.sop_class_uid or "",
            p.modality or "",
            may_show_text(p.sop_class_uid, p.burned_in),
        )
        for p in placed(session, grant_id, originals)
    ]


def wanted_studies(
    index: dict[str, str], study: str | None, filters: dict[str, set[str]]
) -> list[str]:
    """The original UIDs of the studies a call may touch, in manifest order."""
    if study is not None:
        return [index[study]] if study in index else []
    if STUDY_UID in filters:
        return [original for uid, original in index.items() if uid in filters[STUDY_UID]]
    return list(index.values())


def _value(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)}


def _match(query: Mapping[str, list[str]]) -> tuple[dict[str, set[str]], int, int, list[str]]:
    """The attribute filters, offset and limit of a QIDO query, and warnings for the keys
    it ignores."""
    filters: dict[str, set[str]] = {}
    warnings = []
    offset, limit = 0, MAX_LIMIT
    tags = {
        **{k.lower(): v for k, v in MATCH_KEYS.items()},
        **{v.lower(): v for v in MATCH_KEYS.values()},
    }
    for key, values in query.items():
        name = key.lower()
        if name in ("offset", "limit"):
            try:
                number = int(values[-1])
            except ValueError:
                raise InvalidInput(f"{key} must be a whole number") from None
            if number < 0:
                raise InvalidInput(f"{key} must not be negative")
            offset, limit = (
                (number, limit) if name == "offset" else (offset, min(number, MAX_LIMIT))
            )
        elif name in tags:
            wanted = {v.strip() for value in values for v in value.split(",") if v.strip()}
            if wanted:
                filters[tags[name]] = wanted
        elif name not in IGNORED_KEYS:
            warnings.append(f"the query key {key[:64]} is not supported and was ignored")
    return filters, offset, limit, warnings


def _attributes(level: Level, rows: list[Row]) -> dict[str, Any]:
    first = rows[0]
    if level == "studies":
        return {
            MODALITIES_IN_STUDY: _value("CS", *sorted({r.modality for r in rows if r.modality})),
            STUDY_SERIES: _value("IS", len({r.series for r in rows})),
            STUDY_INSTANCES: _value("IS", len(rows)),
            STUDY_UID: _value("UI", first.study),
        }
    if level == "series":
        return {
            MODALITY: _value("CS", first.modality),
            STUDY_UID: _value("UI", first.study),
            SERIES_UID: _value("UI", first.series),
            SERIES_INSTANCES: _value("IS", len(rows)),
        }
    return {
        SOP_CLASS_UID: _value("UI", first.sop_class),
        SOP_UID: _value("UI", first.instance.deid_uid),
        MODALITY: _value("CS", first.modality),
        STUDY_UID: _value("UI", first.study),
        SERIES_UID: _value("UI", first.series),
    }


def _key(level: Level, row: Row) -> tuple[str, ...]:
    if level == "studies":
        return (row.study,)
    if level == "series":
        return (row.study, row.series)
    return (row.study, row.series, row.instance.deid_uid)


def _matches(filters: dict[str, set[str]], group: list[Row]) -> bool:
    """Whether a group (a study, a series or an instance) has each filtered value."""
    values: dict[str, Callable[[Row], str]] = {
        STUDY_UID: lambda r: r.study,
        SERIES_UID: lambda r: r.series,
        SOP_UID: lambda r: r.instance.deid_uid,
        SOP_CLASS_UID: lambda r: r.sop_class,
        MODALITY: lambda r: r.modality,
        MODALITIES_IN_STUDY: lambda r: r.modality,
    }
    return all(any(values[tag](r) in wanted for r in group) for tag, wanted in filters.items())


def within(rows: list[Row], study: str | None, series: str | None) -> list[Row]:
    return [
        r
        for r in rows
        if (study is None or r.study == study) and (series is None or r.series == series)
    ]


def _eligible(
    session: Session, desk: Desk, opened: OpenGrant, rows: list[Row]
) -> tuple[list[Row], int]:
    if not rows:
        return [], 0
    classes = eligibility_now(session, desk.policies, opened, [r.instance for r in rows])
    kept = [r for r, c in zip(rows, classes, strict=True) if c.eligible and not r.may_show_text]
    return kept, len(rows) - len(kept)


def search(
    session: Session,
    desk: Desk,
    grant_id: str,
    token: str | None,
    level: Level,
    query: Mapping[str, list[str]],
    *,
    pipeline_id: str,
    study: str | None = None,
    series: str | None = None,
) -> Found:
    """QIDO-RS at ``level`` (within ``study`` and ``series`` when given): the grant's
    instances eligible now, grouped and matched; the others are only counted."""

    def run() -> Found:
        opened = open_grant(session, desk.keys, grant_id, token, pipeline_id=pipeline_id)
        engine = deidentifier(desk.keys, opened.grant.id, opened.purpose)
        filters, offset, limit, warnings = _match(query)
        index = study_index(session, engine, opened.grant.id)
        wanted = wanted_studies(index, study, filters)
        matched: list[list[Row]] = []
        left_out, seen, more = 0, False, False
        # Studies a chunk at a time, in manifest order, until the page is full: a search
        # reads the rows of the studies it answers (and those it skips), not the grant's.
        for i in range(0, len(wanted), SEARCH_CHUNK):
            scope = within(
                rows_of(session, engine, grant_id, wanted[i : i + SEARCH_CHUNK]), study, series
            )
            seen = seen or bool(scope)
            kept, out = _eligible(session, desk, opened, scope)
            left_out += out
            groups: dict[tuple[str, ...], list[Row]] = {}
            for row in kept:
                groups.setdefault(_key(level, row), []).append(row)
            matched.extend(g for g in groups.values() if _matches(filters, g))
            if len(matched) > offset + limit:
                more = True
                break
        if study is not None and not seen:
            raise NotFound("no such study (or series) in this grant")
        if left_out:
            warnings.append(f"{left_out} instance(s) are no longer eligible and were left out")
        page = matched[offset : offset + limit]
        if more:
            warnings.append(f"more matches: continue with offset={offset + limit}")
        return Found([_attributes(level, g) for g in page], left_out, warnings)

    return logging_refusals(desk, session, grant_id, pipeline_id, run)
