"""Encrypted, content-addressed storage of originals.

Each object is AES-256-GCM under its subject's data key (nonce || ciphertext, the address
bound as associated data); data keys are wrapped with the installation's master key
(RFC 3394 key wrap) and kept in ``subject_keys``. Destroying a subject's key makes every
copy of its images unreadable, backups included (crypto-shredding).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Stored:
    """One thing in the store: an object, or a write that never finished (``partial``)."""

    name: str  # the address; for a partial write, the file's name
    size: int
    modified: float  # POSIX time of the last write
    partial: bool = False


class ObjectStore(Protocol):
    """Where encrypted objects live; the filesystem now, an S3 bucket later."""

    def put(self, address: str, blob: bytes) -> bool: ...
    def get(self, address: str) -> bytes: ...
    def delete(self, address: str) -> None: ...
    def exists(self, address: str) -> bool: ...
    def listing(self) -> Iterator[Stored]: ...
    def delete_stale(self, name: str, written_before: float) -> bool: ...


class FilesystemStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, address: str) -> Path:
        if len(address) != 64 or not all(c in "0123456789abcdef" for c in address):
            raise ValueError("an address is a lowercase SHA-256 hex digest")
        return self.root / address[:2] / address[2:4] / address

    def put(self, address: str, blob: bytes) -> bool:
        """Write atomically, replacing what is there; returns False when an object was.

        Replacing, not keeping: ingest writes only content no image row has, so an object
        already at the address is the leftover of an ingest that never committed, sealed
        under a data key that may have rolled back with it. Keeping it would leave the new
        row pointing at bytes nobody can open."""
        target = self.path(address)
        existed = target.exists()
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = target.with_name(f".{address}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, blob)
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(target)
        _sync_dir(target.parent)  # the rename too must survive a power cut before the commit
        return not existed

    def get(self, address: str) -> bytes:
        try:
            return self.path(address).read_bytes()
        except FileNotFoundError as exc:
            raise Gone("the stored object is missing") from exc

    def delete(self, address: str) -> None:
        self.path(address).unlink(missing_ok=True)

    def exists(self, address: str) -> bool:
        return self.path(address).exists()

    def listing(self) -> Iterator[Stored]:
        """Every object, and every temporary file a write cut short left behind."""
        if not self.root.is_dir():
            return
        for first in sorted(self.root.iterdir()):
            if not (first.is_dir() and _is_hex(first.name, 2)):
                continue
            for second in sorted(first.iterdir()):
                if not (second.is_dir() and _is_hex(second.name, 2)):
                    continue
                for entry in sorted(os.scandir(second), key=lambda e: e.name):
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    info = entry.stat(follow_symlinks=False)
                    name, prefix = entry.name, first.name + second.name
                    if name.startswith("." + prefix) and _is_hex(name[1:65], 64):
                        yield Stored(name, info.st_size, info.st_mtime, partial=True)
                    elif name.startswith(prefix) and _is_hex(name, 64):
                        yield Stored(name, info.st_size, info.st_mtime)

    def delete_stale(self, name: str, written_before: float) -> bool:
        """Delete an object (or a partial write, by its file name) unless it was written
        at or after ``written_before`` (POSIX time): a write that lands meanwhile is kept.
        Returns whether something was deleted."""
        partial = name.startswith(".")
        address = name[1:65] if partial else name
        path = self.path(address)
        if partial:
            if not (len(name) > 66 and name[65] == "." and _is_hex(address, 64)):
                raise ValueError("not the name of a partial write")
            path = path.with_name(name)
        try:
            if path.stat().st_mtime >= written_before:
                return False
            path.unlink()
        except FileNotFoundError:
            return False
        return True


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(c in "0123456789abcdef" for c in text)


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
    view = memoryview(blob)  # slices of a view: the ciphertext is not copied first
    try:
        return AESGCM(key).decrypt(view[:NONCE], view[NONCE:], address.encode())
    except InvalidTag as exc:
        raise ServiceUnavailable(f"object {address[:12]}… failed authentication") from exc
