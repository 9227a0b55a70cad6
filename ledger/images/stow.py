"""STOW-RS: many DICOM instances in one ``multipart/related`` body (PS3.18 §10.5).

Each part goes through the same ingest as ``POST /v1/images`` (``images/service.py``:
the same validation, encryption and log entry), in a savepoint of its own, so a refused
part never takes the others with it. The answer is the standard Store Instances Response
in DICOM JSON: ``ReferencedSOPSequence`` for what was stored (a duplicate counts as
stored: the ledger already holds those bytes), ``FailedSOPSequence`` with a
``FailureReason`` for what was not; 200 when all were stored, 202 when some, 409 when
none.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from pydicom import dcmread
from sqlalchemy.orm import Session

from ledger.errors import InvalidInput, LedgerError
from ledger.images import multipart, service
from ledger.images.store import ObjectStore
from ledger.keystore import KeyRing

# PS3.18 Table 10.5.3-2 / PS3.4 Annex GG failure reasons.
PROCESSING_FAILURE = 0x0110
CANNOT_UNDERSTAND = 0xC000
SOP_CLASS_NOT_SUPPORTED = 0x0122

REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_CLASS_UID = "00081150"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"


@dataclass
class Outcome:
    stored: list[tuple[str, str, bool]] = field(default_factory=list)  # class, uid, duplicate
    failed: list[tuple[str, str, int, str]] = field(default_factory=list)  # + reason, why

    @property
    def status(self) -> int:
        if not self.failed:
            return 200
        return 202 if self.stored else 409

    def as_dicom_json(self) -> dict[str, Any]:
        def ref(cls: str, uid: str) -> dict[str, Any]:
            item: dict[str, Any] = {}
            if cls:
                item[REFERENCED_SOP_CLASS_UID] = {"vr": "UI", "Value": [cls]}
            if uid:
                item[REFERENCED_SOP_INSTANCE_UID] = {"vr": "UI", "Value": [uid]}
            return item

        body: dict[str, Any] = {}
        if self.stored:
            items = [ref(cls, uid) for cls, uid, _ in self.stored]
            body[REFERENCED_SOP_SEQUENCE] = {"vr": "SQ", "Value": items}
        if self.failed:
            body[FAILED_SOP_SEQUENCE] = {
                "vr": "SQ",
                "Value": [
                    {**ref(cls, uid), FAILURE_REASON: {"vr": "US", "Value": [reason]}}
                    for cls, uid, reason, _ in self.failed
                ],
            }
        return body

    def warnings(self, limit: int = 20) -> list[str]:
        """Why each failed part failed, in words, for ``Warning`` headers."""
        return [
            f"{uid or '(unknown instance)'}: {why}"[:300] for _, uid, _, why in self.failed[:limit]
        ]


def _identity(data: bytes) -> tuple[str, str]:
    """The SOP Class and Instance UIDs of a file, as far as they can be read at all."""
    try:
        ds = dcmread(
            io.BytesIO(data),
            force=True,
            stop_before_pixels=True,
            specific_tags=["SOPClassUID", "SOPInstanceUID"],
        )
        return str(ds.get("SOPClassUID", "") or "")[:64], str(ds.get("SOPInstanceUID", "") or "")[
            :64
        ]
    except Exception:  # anything unreadable is reported without UIDs
        return "", ""


def boundary_of_request(content_type: str) -> str:
    """The body's boundary, or 415/422 saying what the ``Content-Type`` lacks."""
    return multipart.boundary_of(content_type)


def store_instances(
    session: Session,
    store: ObjectStore,
    keys: KeyRing,
    body: bytes,
    content_type: str,
    *,
    default_issuer: str,
    actor: str | None,
) -> Outcome:
    """Ingest every part of a STOW-RS body, each in a savepoint of its own."""
    parts = multipart.split(body, boundary_of_request(content_type))
    if not parts:
        raise InvalidInput("the multipart/related body holds no instance")
    outcome = Outcome()
    for part in parts:
        cls, uid = _identity(part.data)
        if part.content_type != multipart.DICOM:
            outcome.failed.append(
                (cls, uid, SOP_CLASS_NOT_SUPPORTED, f"a {part.content_type} part, not DICOM")
            )
            continue
        try:
            with session.begin_nested():
                done = service.ingest(
                    session, store, keys, part.data, default_issuer=default_issuer, actor=actor
                )
        except InvalidInput as exc:
            outcome.failed.append((cls, uid, CANNOT_UNDERSTAND, exc.detail))
            continue
        except LedgerError as exc:
            outcome.failed.append((cls, uid, PROCESSING_FAILURE, exc.detail))
            continue
        image = done.image
        outcome.stored.append((image.sop_class_uid or cls, image.sop_uid or uid, done.duplicate))
    return outcome
