"""Small records sealed under a subject's data key (``store.data_key``), so that erasing
the subject shreds them together with its images: the consent domain keeps the FHIR
resources it was sent this way (``consent.fhir_store.Sealer``)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from ledger.images.store import data_key, seal, unseal


@dataclass(frozen=True)
class SubjectSealer:
    master_key: bytes

    def seal(self, session: Session, subject_id: str, address: str, plaintext: bytes) -> bytes:
        return seal(data_key(session, self.master_key, subject_id), address, plaintext)

    def unseal(self, session: Session, subject_id: str, address: str, blob: bytes) -> bytes:
        """Raises ``Gone`` once the subject's key is destroyed."""
        key = data_key(session, self.master_key, subject_id, create=False)
        return unseal(key, address, blob)
