"""Encrypted, content-addressed storage of originals.

Each object is AES-256-GCM under its subject's data key (nonce || ciphertext, the address
bound as associated data); data keys are wrapped with the installation's master key
(RFC 3394 key wrap) and kept in ``subject_keys``. Destroying a subject's key makes every
copy of its images unreadable, backups included (crypto-shredding).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap
from sqlalchemy.orm import Session

from ledger.clock import utcnow
from ledger.errors import Gone, ServiceUnavailable
from ledger.images.models import SubjectKey

NONCE = 12


class ObjectStore(Protocol):
    """Where encrypted objects live; the filesystem now, an S3 bucket later."""

    def put(self, address: str, blob: bytes) -> bool: ...
    def get(self, address: str) -> bytes: ...
    def delete(self, address: str) -> None: ...
    def exists(self, address: str) -> bool: ...


class FilesystemStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, address: str) -> Path:
        if len(address) != 64 or not all(c in "0123456789abcdef" for c in address):
            raise ValueError("an address is a lowercase SHA-256 hex digest")
        return self.root / address[:2] / address[2:4] / address

    def put(self, address: str, blob: bytes) -> bool:
        """Store once; returns False when the object was already there."""
        target = self.path(address)
        if target.exists():
            return False
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = target.with_name(f".{address}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, blob)
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(target)
        return True

    def get(self, address: str) -> bytes:
        try:
            return self.path(address).read_bytes()
        except FileNotFoundError as exc:
            raise Gone("the stored object is missing") from exc

    def delete(self, address: str) -> None:
        self.path(address).unlink(missing_ok=True)

    def exists(self, address: str) -> bool:
        return self.path(address).exists()


def data_key(session: Session, master: bytes, subject_id: str, *, create: bool = True) -> bytes:
    row = session.get(SubjectKey, subject_id)
    if row is None:
        if not create:
            raise Gone("this subject has no data key")
        key = AESGCM.generate_key(bit_length=256)
        session.add(SubjectKey(subject_id=subject_id, wrapped_key=aes_key_wrap(master, key)))
        session.flush()
        return key
    if row.wrapped_key is None:
        raise Gone("this subject was erased: its images can no longer be decrypted")
    try:
        return aes_key_unwrap(master, bytes(row.wrapped_key))
    except ValueError as exc:
        raise ServiceUnavailable("the master key does not unwrap this data key") from exc


def destroy_key(session: Session, subject_id: str) -> bool:
    row = session.get(SubjectKey, subject_id)
    if row is None or row.wrapped_key is None:
        return False
    row.wrapped_key = None
    row.destroyed_at = utcnow()
    return True


def seal(key: bytes, address: str, plaintext: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, address.encode())


def unseal(key: bytes, address: str, blob: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:NONCE], blob[NONCE:], address.encode())
    except InvalidTag as exc:
        raise ServiceUnavailable(f"object {address[:12]}… failed authentication") from exc
