"""WADO-RS under a grant: a study's, a series' or an instance's de-identified files, and
their attributes as DICOM JSON (``metadata``), released as every release call is (see
``ledger.access.dicomweb``, which holds the searches and what both read of the manifest).

Files are rendered by ``render_reuse`` (a series' first file by ``release_render``: the
header de-identified and written, the original pixel data spliced after it; the next
files from it). A study or series holds one of the grant's download slots until its
stream ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy.orm import Session

from ledger.access import release_render
from ledger.access.archive import Prepared, Quarantined
from ledger.access.dicomweb import Found, Row, rows_of, study_index, wanted_studies, within
from ledger.access.release import (
    Desk,
    NoLongerEligible,
    NotReleasable,
    OpenGrant,
    Refused,
    logging_refusals,
    open_grant,
    prepare,
)
from ledger.access.release_profile import deidentifier
from ledger.access.render_reuse import SeriesRenderer
from ledger.errors import NotFound
from ledger.images.deid import Deidentifier


@dataclass(frozen=True)
class Retrieved:
    """De-identified files to stream; how many were released and left out is known first.
    ``close`` gives back the download slot the stream holds, if the stream has not: call
    it when the answer ends, however it ends (the stream may never have started)."""

    files: Iterator[release_render.Pieces]
    released: int
    left_out: int
    close: Callable[[], None] = lambda: None


class _Held:
    """A download slot held for one stream, given back exactly once."""

    def __init__(self, desk: Desk, grant_id: str) -> None:
        self.desk, self.grant_id = desk, grant_id
        desk.slots.take(grant_id)
        self._held = True
        self._lock = threading.Lock()

    def give(self) -> None:
        with self._lock:
            held, self._held = self._held, False
        if held:
            self.desk.slots.give(self.grant_id)


def _scope(
    session: Session,
    engine: Deidentifier,
    grant_id: str,
    study: str,
    series: str | None,
    sop: str | None,
) -> list[Row]:
    """The manifest rows a retrieval names: one study's, narrowed to a series or an
    instance; NotFound when that names nothing in the manifest."""
    index = study_index(session, engine, grant_id)
    scope = within(
        rows_of(session, engine, grant_id, wanted_studies(index, study, {})), study, series
    )
    if sop is not None:
        scope = [r for r in scope if r.instance.deid_uid == sop]
    if not scope:
        raise NotFound("no such study, series or instance in this grant's manifest")
    return scope


def _opened(
    session: Session,
    desk: Desk,
    grant_id: str,
    token: str | None,
    pipeline_id: str,
    study: str,
    series: str | None,
    sop: str | None,
) -> tuple[OpenGrant, Deidentifier, list[Row]]:
    """The grant opened for the calling pipeline, its engine, and the manifest rows the
    retrieval names."""
    opened = open_grant(session, desk.keys, grant_id, token, pipeline_id=pipeline_id)
    engine = deidentifier(desk.keys, grant_id, opened.purpose)
    return opened, engine, _scope(session, engine, grant_id, study, series, sop)


def _released(
    session: Session, desk: Desk, opened: OpenGrant, scope: list[Row], pipeline_id: str
) -> tuple[list[Prepared], list[Refused]]:
    """``prepare`` for the rows in scope: 410 when none of them is eligible now."""
    ready, refused = prepare(
        session, desk.keys, desk.policies, opened, [r.instance for r in scope], actor=pipeline_id
    )
    if not ready:
        raise NoLongerEligible(_summary(refused))
    return ready, refused


def retrieve(
    session: Session,
    desk: Desk,
    grant_id: str,
    token: str | None,
    *,
    pipeline_id: str,
    study: str,
    series: str | None = None,
    sop: str | None = None,
) -> Retrieved:
    """WADO-RS: the de-identified files of a study, a series or one instance of the
    grant. Those no longer eligible are left out (and counted); if nothing is left, 410.
    A study or series holds one of the grant's download slots until its stream ends."""

    def run() -> Retrieved:
        opened, engine, scope = _opened(
            session, desk, grant_id, token, pipeline_id, study, series, sop
        )
        held = _Held(desk, grant_id) if sop is None else None
        try:
            ready, refused = _released(session, desk, opened, scope, pipeline_id)
        except BaseException:
            if held is not None:
                held.give()
            raise
        if held is None:
            try:
                one = release_render.render_pieces(desk.store, engine, ready[0])
            except Quarantined as exc:
                raise NotReleasable(exc.reasons) from exc
            return Retrieved(iter([one]), 1, 0)
        slot = held

        def files() -> Iterator[release_render.Pieces]:
            series = SeriesRenderer(desk.store, engine)
            try:
                for item in ready:
                    try:
                        yield series.render(item)
                    except Quarantined:
                        continue  # withheld, never sent (the headers have gone already)
            finally:
                slot.give()

        return Retrieved(files(), len(ready), len(refused), slot.give)

    return logging_refusals(desk, session, grant_id, pipeline_id, run)


def metadata(
    session: Session,
    desk: Desk,
    grant_id: str,
    token: str | None,
    *,
    pipeline_id: str,
    study: str,
    series: str | None = None,
    sop: str | None = None,
) -> Found:
    """WADO-RS metadata: each released instance's de-identified attributes as DICOM
    JSON, without its pixel data. A release like ``retrieve`` (every check, one
    ``release.instances`` entry for what is released); an instance de-identification
    withholds is left out of a study or series, and refused (409) on its own."""

    def run() -> Found:
        opened, engine, scope = _opened(
            session, desk, grant_id, token, pipeline_id, study, series, sop
        )
        ready, refused = _released(session, desk, opened, scope, pipeline_id)
        found = Found([], len(refused))
        for item in ready:
            try:
                found.matches.append(release_render.attributes(desk.store, engine, item))
            except Quarantined as exc:
                if sop is not None:
                    raise NotReleasable(exc.reasons) from exc
                found.left_out += 1
        if found.left_out:
            found.warnings.append(
                f"{found.left_out} instance(s) are no longer eligible or not releasable "
                "and were left out"
            )
        return found

    return logging_refusals(desk, session, grant_id, pipeline_id, run)


def _summary(refused: list[Refused]) -> Refused:
    if len(refused) == 1:
        return refused[0]
    policy_ids = tuple(sorted({p for r in refused for p in r.policy_ids}))
    reasons = tuple(dict.fromkeys(reason for r in refused for reason in r.reasons))
    return Refused(f"{len(refused)} instances", policy_ids, reasons)
