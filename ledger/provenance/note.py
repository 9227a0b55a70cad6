"""Checkpoints as C2SP signed notes (https://c2sp.org/signed-note, /tlog-checkpoint).

A checkpoint is three lines (origin, tree size, base64 root hash), a blank line, and one
signature line per signer: ``— <key name> <base64(key hash || Ed25519 signature)>``. The
key hash is the first four bytes of SHA-256(name || 0x0A || 0x01 || public key), so a
verifier can tell which of its keys a line claims to be from. Using the standard format
means auditors can check our checkpoints with any signed-note tool, not only ours.

Pure functions over bytes and ``cryptography``; no database import, so the offline bundle
verifier needs nothing but the package.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519_ALG = b"\x01"
SIGNATURE_PREFIX = "\u2014 "  # em dash and a space
MAX_NOTE_BYTES = 1 << 20


class NoteError(ValueError):
    """A note that is malformed or carries no valid signature from a trusted key."""


@dataclass(frozen=True)
class Verifier:
    """A public key a note may be signed with, named as signer lines name it."""

    name: str
    public_key: bytes

    @property
    def key_hash(self) -> bytes:
        return key_hash(self.name, self.public_key)

    def encode(self) -> str:
        """The standard verifier-key string: ``name+hexhash+base64(0x01 || key)``."""
        blob = base64.b64encode(ED25519_ALG + self.public_key).decode()
        return f"{self.name}+{self.key_hash.hex()}+{blob}"

    @classmethod
    def decode(cls, text: str) -> Verifier:
        try:
            name, hash_hex, blob = text.strip().split("+", 2)
            raw = base64.b64decode(blob, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise NoteError(f"not a verifier key: {text[:80]!r}") from exc
        if raw[:1] != ED25519_ALG or len(raw) != 33:
            raise NoteError("only Ed25519 verifier keys are supported")
        verifier = cls(name, raw[1:])
        if verifier.key_hash.hex() != hash_hex.lower():
            raise NoteError(f"verifier key {name!r}: key hash does not match the key")
        return verifier


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root_hash).decode()}\n"


def key_hash(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519_ALG + public_key).digest()[:4]


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise ValueError(f"invalid signer name {name!r}: no spaces or '+'")


def sign_text(text: str, name: str, private: Ed25519PrivateKey) -> str:
    """Any text (ending in a newline) as a signed note with one signature line."""
    _check_name(name)
    if not text.endswith("\n") or "\n\n" in text:
        raise ValueError("note text must end with a newline and contain no blank line")
    signature = private.sign(text.encode())
    public = private.public_key().public_bytes_raw()
    blob = base64.b64encode(key_hash(name, public) + signature).decode()
    return f"{text}\n{SIGNATURE_PREFIX}{name} {blob}\n"


def sign(checkpoint: Checkpoint, name: str, private: Ed25519PrivateKey) -> str:
    """The checkpoint as a signed note."""
    if "\n" in checkpoint.origin or not checkpoint.origin:
        raise ValueError("the origin must be one non-empty line")
    return sign_text(checkpoint.body(), name, private)


def _split(note: str) -> tuple[str, list[str]]:
    if len(note.encode()) > MAX_NOTE_BYTES:
        raise NoteError("note too large")
    body, sep, signatures = note.partition("\n\n")
    if not sep or not signatures.endswith("\n"):
        raise NoteError("a signed note is a body, a blank line and signature lines")
    return body + "\n", signatures[:-1].split("\n")


def parse(note: str) -> Checkpoint:
    """The checkpoint a note claims, without checking any signature."""
    body, _ = _split(note)
    lines = body.split("\n")
    if len(lines) < 4:
        raise NoteError("a checkpoint body has an origin, a size and a root hash")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not size_text.isdigit() or (size_text.startswith("0") and size_text != "0"):
        raise NoteError(f"tree size is not a decimal number: {size_text!r}")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error as exc:
        raise NoteError("root hash is not base64") from exc
    if len(root) != 32 or not origin:
        raise NoteError("root hash must be 32 bytes and the origin non-empty")
    return Checkpoint(origin, int(size_text), root)


def verify_text(note: str, verifiers: list[Verifier]) -> tuple[str, list[str]]:
    """Check a note's signatures; returns its text and the names whose signatures verify.

    Raises NoteError unless at least one signature verifies under one of ``verifiers``;
    lines from unknown keys are ignored (a note may carry witness cosignatures), but a
    line from a known key that does not verify means the note was altered.
    """
    body, lines = _split(note)
    signed_by: list[str] = []
    by_hash = {(v.name, v.key_hash): v for v in verifiers}
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError(f"not a signature line: {line[:80]!r}")
        name, _, blob_text = line[len(SIGNATURE_PREFIX) :].partition(" ")
        try:
            blob = base64.b64decode(blob_text, validate=True)
        except binascii.Error as exc:
            raise NoteError("signature is not base64") from exc
        verifier = by_hash.get((name, blob[:4]))
        if verifier is None or len(blob) != 68:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(verifier.public_key).verify(blob[4:], body.encode())
        except InvalidSignature as exc:
            raise NoteError(f"signature by {name!r} does not verify: note altered") from exc
        signed_by.append(name)
    if not signed_by:
        raise NoteError("no signature from a trusted key")
    return body, signed_by


def open_note(note: str, verifiers: list[Verifier]) -> tuple[Checkpoint, list[str]]:
    """A checkpoint note's claims, once at least one trusted signature verifies."""
    _, signed_by = verify_text(note, verifiers)
    return parse(note), signed_by
