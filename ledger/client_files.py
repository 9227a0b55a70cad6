"""What the SDK does to a pipeline's local files: their names (a DICOM UID and ``.dcm``,
never a path the server chose), unpacking a release archive into a folder so that a file
that exists is complete, deleting what a revocation lists, hashing a model's weights and
the download progress bar. Used by ``ledger.client.LedgerClient``; import that, not this.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ledger.client_dicomweb import UID

REFUSED_MEMBER = "ledger-refused.json"
# Files are named ``<uid>.dcm`` (``UID``: a DICOM UID); anything else a server sends is
# never used as a file name.
NOT_A_UID = "not a DICOM UID: ignored, no file was touched"


def local_file(folder: Path, uid: object) -> Path | None:
    """``folder/<uid>.dcm``, or None when ``uid`` is no DICOM UID (so the path could
    leave the folder: ``../x``, an absolute path, a drive)."""
    if not isinstance(uid, str) or len(uid) > 64 or not UID.match(uid):
        return None
    path = folder / f"{uid}.dcm"
    return path if path.parent == folder else None


def unpack(archive_file: IO[bytes], target: Path) -> tuple[int, list[Any]]:
    """The files of a release archive written into ``target`` (each to a temporary name,
    then renamed), and the refusals it lists."""
    got, refused = 0, []
    with zipfile.ZipFile(archive_file) as archive:
        for name in archive.namelist():
            if name == REFUSED_MEMBER:
                refused = json.loads(archive.read(name))
                continue
            path = local_file(target, name.removesuffix(".dcm"))
            if path is None or not name.endswith(".dcm"):
                continue  # never write outside the folder, nor a stray name in it
            partial = target / f".{name}.partial"
            partial.write_bytes(archive.read(name))
            partial.replace(path)
            got += 1
    return got, refused


def delete_revoked(changes: dict[str, Any], folders: dict[str, Path]) -> list[Path]:
    """Delete the local copies a revocations answer lists (all of a revoked grant's, and
    each instance no longer usable); ``folders`` maps grant id → download folder."""
    deleted = []
    revoked = {g["grant_id"] for g in changes.get("grants", [])}
    for grant_id in revoked & set(folders):
        for path in Path(folders[grant_id]).glob("*.dcm"):
            path.unlink()
            deleted.append(path)
    for entry in changes.get("instances", []):
        folder = folders.get(entry["grant_id"])
        if folder is None:
            continue
        for uid in entry["sop_instance_uids"]:
            found = local_file(Path(folder), uid)  # None: not a UID, never a path
            if found is not None and found.exists():
                found.unlink()
                deleted.append(found)
    return deleted


def is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Progress:
    """A rich progress bar when asked (and rich is there), else a no-op counter."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled and total > 0
        self.total = total
        self._bar: Any = None

    def __enter__(self) -> Callable[[int], None]:
        if self.enabled:
            from rich.progress import Progress as Bar

            self._bar = Bar(transient=True)
            self._bar.start()
            task = self._bar.add_task("downloading", total=self.total)
            return lambda n: self._bar.advance(task, n)
        return lambda n: None

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
