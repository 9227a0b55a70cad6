"""Pulling instances from a PACS over DICOMweb into the encrypted store.

QIDO-RS lists the source's studies (optionally from a study date on, of one modality);
WADO-RS fetches what the ledger does not hold yet, and each instance goes through the
same ingest as ``POST /v1/images`` (``images/service.py``) in a transaction of its own, so
an interruption never leaves a partial instance: what committed is complete, the rest is
fetched again next time.

Resumable and incremental: the last position is kept in a small JSON file per source
under ``LEDGER_HOME/sync/`` (keyed by the source URL's hash; written atomically after each
study), holding each study's instance count when it was last synced and the instances
the ledger refused. A study whose count has not changed is skipped without listing its
instances; in one that has, instances already in the index (by SOP Instance UID) are not
fetched again. A series mostly new is fetched in one WADO-RS call (held in memory, up to
``MAX_SERIES`` instances), the few new instances of a known series one call each.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
from pydicom import dcmread
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.errors import InvalidInput, LedgerError, ServiceUnavailable
from ledger.images import multipart, service
from ledger.images.models import Image
from ledger.images.store import ObjectStore
from ledger.keystore import KeyRing

STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
STUDY_INSTANCES = "00201208"
PAGE = 500
MAX_SERIES = 1000  # a series fetched in one call is held in memory
ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'


@dataclass(frozen=True)
class Source:
    url: str  # the DICOMweb root, e.g. http://pacs:8042/dicom-web
    user: str | None = None
    password: str | None = None
    study_date_from: date | None = None
    modality: str | None = None
    timeout: float = 120.0

    @property
    def key(self) -> str:
        return hashlib.sha256(self.url.rstrip("/").encode()).hexdigest()[:24]


@dataclass
class Report:
    source: str
    studies: int = 0
    studies_unchanged: int = 0
    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    already_indexed: int = 0
    bytes: int = 0
    subjects_created: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class State:
    """The last position for one source: per study, the instance count last synced and
    the SOP Instance UIDs the ledger refused (so they are not fetched again)."""

    def __init__(self, path: Path, url: str) -> None:
        self.path = path
        data: dict[str, Any] = {}
        if path.exists():
            data = json.loads(path.read_text())
        self.url = url
        self.studies: dict[str, dict[str, Any]] = data.get("studies", {})

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"url": self.url, "studies": self.studies}, indent=1))
        os.replace(tmp, self.path)


def state_path(home: Path, source: Source) -> Path:
    return home / "sync" / f"{source.key}.json"


def _first(item: dict[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value") or [None]
    return values[0]


class Pacs:
    """The few DICOMweb calls a sync needs, over one HTTP connection pool."""

    def __init__(self, source: Source, http: httpx.Client | None = None) -> None:
        auth = (source.user, source.password or "") if source.user else None
        self.base = source.url.rstrip("/")
        self.source = source
        self.http = http or httpx.Client(auth=auth, timeout=source.timeout)

    def _json(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        try:
            r = self.http.get(
                self.base + path, params=params, headers={"Accept": "application/dicom+json"}
            )
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"the PACS did not answer: {exc}") from exc
        if r.status_code == 204:
            return []
        if r.status_code >= 400:
            raise ServiceUnavailable(f"the PACS answered {r.status_code} to {path}")
        answer = r.json() if r.content else []
        if not isinstance(answer, list):
            raise InvalidInput("the PACS's QIDO answer is not a DICOM JSON array")
        return answer

    def studies(self) -> Iterator[dict[str, Any]]:
        params = {"includefield": STUDY_INSTANCES, "limit": str(PAGE)}
        if self.source.study_date_from is not None:
            params["StudyDate"] = self.source.study_date_from.strftime("%Y%m%d") + "-"
        if self.source.modality:
            params["ModalitiesInStudy"] = self.source.modality
        offset = 0
        while True:
            page = self._json("/studies", {**params, "offset": str(offset)})
            yield from page
            if len(page) < PAGE:
                return
            offset += len(page)

    def instances(self, study: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = self._json(
                f"/studies/{study}/instances", {"limit": str(PAGE), "offset": str(len(out))}
            )
            out += page
            if len(page) < PAGE:
                return out

    def fetch(self, study: str, series: str, sop: str) -> bytes:
        """One instance, whole (WADO-RS), or the error saying why not."""
        path = f"/studies/{study}/series/{series}/instances/{sop}"
        try:
            r = self.http.get(self.base + path, headers={"Accept": ACCEPT_DICOM})
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"the PACS did not answer: {exc}") from exc
        if r.status_code >= 400:
            raise ServiceUnavailable(f"the PACS answered {r.status_code} to WADO-RS {sop}")
        boundary = multipart.boundary_of(r.headers.get("content-type", ""))
        parts = multipart.split(r.content, boundary)
        if len(parts) != 1:
            raise InvalidInput(f"the PACS sent {len(parts)} parts for one instance")
        return parts[0].data

    def fetch_series(self, study: str, series: str) -> list[bytes]:
        """A series' instances (WADO-RS), each whole."""
        path = f"/studies/{study}/series/{series}"
        try:
            r = self.http.get(self.base + path, headers={"Accept": ACCEPT_DICOM})
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"the PACS did not answer: {exc}") from exc
        if r.status_code >= 400:
            raise ServiceUnavailable(f"the PACS answered {r.status_code} to WADO-RS {series}")
        boundary = multipart.boundary_of(r.headers.get("content-type", ""))
        return [p.data for p in multipart.split(r.content, boundary)]

    def close(self) -> None:
        self.http.close()


def _indexed(session: Session, uids: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(uids), 1000):
        found |= {
            uid
            for uid in session.execute(
                select(col(Image.sop_uid)).where(col(Image.sop_uid).in_(uids[i : i + 1000]))
            ).scalars()
            if uid
        }
    return found


def _sop_of(data: bytes) -> str:
    try:
        ds = dcmread(
            io.BytesIO(data), force=True, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]
        )
        return str(ds.get("SOPInstanceUID", "") or "")
    except Exception:  # unreadable: ingest will say why, if it is ever fetched alone
        return ""


UnitOfWork = Callable[[], AbstractContextManager[Session]]


def sync(
    source: Source,
    *,
    state: State,
    transaction: UnitOfWork,
    store: ObjectStore,
    keys: KeyRing,
    default_issuer: str,
    actor: str | None,
    pacs: Pacs | None = None,
    on_total: Callable[[int], None] = lambda n: None,
    on_instance: Callable[[int], None] = lambda n: None,
) -> Report:
    """Fetch what is new at ``source``; see the module's docstring."""
    own = pacs is None
    pacs = pacs or Pacs(source)
    report = Report(source.url)
    try:
        listed = list(pacs.studies())
        report.studies = len(listed)
        changed = []
        for item in listed:
            uid = _first(item, STUDY_UID)
            count = _first(item, STUDY_INSTANCES)
            known = state.studies.get(str(uid))
            if uid and known is not None and count is not None and known["count"] == int(count):
                report.studies_unchanged += 1
            elif uid:
                changed.append((str(uid), int(count) if count is not None else None))
        on_total(sum(c or 0 for _, c in changed))
        for study, _ in changed:
            _sync_study(
                pacs,
                study,
                state,
                transaction,
                store,
                keys,
                default_issuer,
                actor,
                report,
                on_instance,
            )
            state.save()
    finally:
        if own:
            pacs.close()
    return report


def _sync_study(
    pacs: Pacs,
    study: str,
    state: State,
    transaction: UnitOfWork,
    store: ObjectStore,
    keys: KeyRing,
    default_issuer: str,
    actor: str | None,
    report: Report,
    on_instance: Callable[[int], None],
) -> None:
    instances = pacs.instances(study)
    refused = set(state.studies.get(study, {}).get("refused", []))
    uids = [str(_first(i, SOP_UID)) for i in instances]
    with transaction() as session:
        indexed = _indexed(session, uids)
    by_series: dict[str, list[str]] = {}
    for item, sop in zip(instances, uids, strict=True):
        if sop in indexed or sop in refused:
            report.already_indexed += 1
            on_instance(0)
        else:
            by_series.setdefault(str(_first(item, SERIES_UID)), []).append(sop)
    sizes: dict[str, int] = {}
    for item in instances:
        key = str(_first(item, SERIES_UID))
        sizes[key] = sizes.get(key, 0) + 1

    def ingest(sop: str, data: bytes) -> None:
        report.fetched += 1
        report.bytes += len(data)
        try:
            with transaction() as session:  # one instance, one commit: never a partial one
                done = service.ingest(
                    session, store, keys, data, default_issuer=default_issuer, actor=actor
                )
        except LedgerError as exc:
            report.failed.append({"sop_instance_uid": sop, "reason": exc.detail})
            refused.add(sop)
        else:
            if done.duplicate:
                report.duplicates += 1
            else:
                report.stored += 1
                report.subjects_created += int(done.subject_created)
        on_instance(len(data))

    for series, wanted in by_series.items():
        if len(wanted) > 1 and 2 * len(wanted) >= sizes[series] and sizes[series] <= MAX_SERIES:
            # Mostly new: one WADO-RS call for the series (far fewer round trips).
            left = set(wanted)
            for data in pacs.fetch_series(study, series):
                sop = _sop_of(data)
                if sop in left:
                    left.discard(sop)
                    ingest(sop, data)
            wanted = sorted(left)  # anything the series answer lacked
        for sop in wanted:
            ingest(sop, pacs.fetch(study, series, sop))
    state.studies[study] = {"count": len(instances), "refused": sorted(refused)}
