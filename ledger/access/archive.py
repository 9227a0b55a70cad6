"""Turning prepared releases into bytes: one de-identified DICOM file, or a zip stream of
many written file by file (never the whole archive in memory).

Pure of web and database: it gets the object store, the grant's de-identification engine
and what ``release.prepare`` read inside the transaction (``Prepared``).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset

from ledger.images import pixels
from ledger.images.deid import Deidentifier
from ledger.images.part10 import PREAMBLE
from ledger.images.store import ObjectStore, unseal

REFUSED_MEMBER = "ledger-refused.json"


@dataclass(frozen=True)
class Prepared:
    """What the streaming part needs, read inside the transaction: no session after it."""

    uid: str
    address: str
    data_key: bytes


class Quarantined(Exception):
    """De-identification found a reason not to release this file (text in pixels)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


def render(store: ObjectStore, engine: Deidentifier, item: Prepared) -> bytes:
    """The de-identified file; Quarantined when it must not leave."""
    original = unseal(item.data_key, item.address, store.get(item.address))
    ds = dcmread(io.BytesIO(original), force=True)
    result = engine.apply(ds)
    if result.quarantined:
        raise Quarantined(result.reasons)
    burned = pixels.check(ds)  # text OCR finds in an image at risk is refused, never masked
    if burned.quarantine is not None:
        raise Quarantined([burned.quarantine])
    blank_preamble(ds)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=False)
    return out.getvalue()


def blank_preamble(ds: Dataset) -> None:
    """A file's 128-byte preamble is free for anyone to fill (a TIFF header, a note) and
    de-identification reads none of it: a released file's is zeros, as ``ledger deid``
    writes (``images/part10.py``). A file read without a preamble is written without."""
    if ds.preamble is not None:
        ds.preamble = PREAMBLE


class _Sink(io.RawIOBase):
    """A write-only stream the zip writer fills and the generator drains."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out = b"".join(self.chunks)
        self.chunks.clear()
        return out


def zip_stream(
    render_file: Callable[[Prepared], bytes],
    items: Sequence[Prepared],
    refused: list[dict[str, Any]],
) -> Iterator[bytes]:
    """Yield a zip archive of ``items`` as ``<uid>.dcm``, one file at a time, each the
    bytes ``render_file`` gives (release passes ``release_render.render``: ``render``'s
    bytes, cheaper); anything refused (before or during the stream) is listed in
    ``ledger-refused.json``."""
    sink = _Sink()
    refused = list(refused)
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for item in items:
            try:
                data = render_file(item)
            except Quarantined as exc:
                refused.append(
                    {
                        "sop_instance_uid": item.uid,
                        "policy_ids": ["deid-quarantine"],
                        "reasons": exc.reasons,
                    }
                )
                continue
            archive.writestr(f"{item.uid}.dcm", data)
            yield sink.drain()
        if refused:
            archive.writestr(REFUSED_MEMBER, json.dumps(refused, indent=1))
    yield sink.drain()
