"""Audit bundles: the whole log in one file an auditor verifies with no database or server.

A bundle is a zip with ``manifest.json`` (format, origin, verifier keys, JWKS),
``entries.jsonl`` (entry ``i`` on line ``i``, exactly the bytes that were hashed; RFC 8785
JSON never contains a raw newline) and ``checkpoints.jsonl`` (one signed note per line,
JSON-quoted). The keys inside a bundle only say which keys the exporter claims; an auditor
who pins the keys they trust (``--key``) is not relying on the exporter at all.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.keystore import KeyRing
from ledger.provenance.checkpoints import verifiers
from ledger.provenance.models import CheckpointRecord, LogEntry
from ledger.provenance.note import NoteError, Verifier
from ledger.provenance.verify import Report, SignedCheckpoint, verify_entries

FORMAT = "ledger-audit-bundle"
VERSION = 1
BATCH = 10_000


class BundleError(ValueError):
    """The file is not a bundle this version can read."""


@dataclass(frozen=True)
class Exported:
    path: Path
    entries: int
    checkpoints: int


def export(session: Session, path: Path, keys: KeyRing, origin: str) -> Exported:
    """Write every committed entry and checkpoint to ``path`` (replaced atomically)."""
    tmp = path.with_name(f".{path.name}.partial")
    entries = checkpoints = 0
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("entries.jsonl", "w", force_zip64=True) as out:
            stream = session.execute(
                select(col(LogEntry.seq), col(LogEntry.entry))
                .order_by(col(LogEntry.seq))
                .execution_options(yield_per=BATCH)
            )
            for seq, entry in stream:
                if seq != entries:
                    raise BundleError(f"the database log has a gap at entry {entries}")
                out.write(bytes(entry) + b"\n")
                entries += 1
        with zf.open("checkpoints.jsonl", "w", force_zip64=True) as out:
            notes = session.execute(
                select(col(CheckpointRecord.note)).order_by(col(CheckpointRecord.size))
            ).scalars()
            for note in notes:
                out.write(json.dumps(note).encode() + b"\n")
                checkpoints += 1
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "origin": origin,
            "entries": entries,
            "checkpoints": checkpoints,
            "verifier_keys": [v.encode() for v in verifiers(keys, origin)],
            "jwks": {"keys": [k.jwk().as_dict(private=False) for k in keys.signing.values()]},
        }
        zf.writestr("manifest.json", json.dumps(manifest, indent=2))
    tmp.replace(path)
    return Exported(path, entries, checkpoints)


def _manifest(zf: zipfile.ZipFile) -> dict[str, Any]:
    try:
        manifest = json.loads(zf.read("manifest.json"))
    except (KeyError, ValueError) as exc:
        raise BundleError("no readable manifest.json: not a ledger audit bundle") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError("manifest.json is not a ledger audit bundle manifest")
    if manifest.get("version") != VERSION:
        raise BundleError(f"bundle version {manifest.get('version')} is not supported")
    return manifest


def _rows(zf: zipfile.ZipFile) -> Iterator[tuple[int, bytes, None, None]]:
    with zf.open("entries.jsonl") as lines:
        for seq, line in enumerate(lines):
            yield seq, line.rstrip(b"\n"), None, None


def verify_bundle(
    path: Path,
    pinned: list[Verifier] | None = None,
    witnessed: Sequence[SignedCheckpoint] = (),
) -> tuple[Report, dict[str, Any]]:
    """Verify a bundle offline; ``pinned`` keys replace the keys the bundle names."""
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BundleError(f"cannot open {path} as a bundle: {exc}") from exc
    with zf:
        manifest = _manifest(zf)
        try:
            keys = pinned or [Verifier.decode(k) for k in manifest.get("verifier_keys", [])]
        except NoteError as exc:
            raise BundleError(f"manifest.json: {exc}") from exc
        try:
            notes = [json.loads(line) for line in zf.read("checkpoints.jsonl").splitlines()]
        except (KeyError, ValueError) as exc:
            raise BundleError("checkpoints.jsonl is missing or not JSON lines") from exc
        signed = [
            SignedCheckpoint(note, f"bundle checkpoint #{i}")
            for i, note in enumerate(notes)
            if isinstance(note, str)
        ]
        try:
            report = verify_entries(
                _rows(zf), [*signed, *witnessed], keys, origin=manifest.get("origin")
            )
        except KeyError as exc:
            raise BundleError("entries.jsonl is missing") from exc
    return report, manifest
