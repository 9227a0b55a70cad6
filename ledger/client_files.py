"""What the SDK does to a pipeline's local files: ``download`` of a grant into a folder
(resumable, with a progress bar), file names (a DICOM UID and ``.dcm``, never a path the
server chose), unpacking a release archive so that a file that exists is complete,
deleting what a revocation lists, and hashing a model's weights. Mixed into and used by
``ledger.client.LedgerClient``; import that, not this.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx

from ledger.client_dicomweb import GRANT_HEADER, UID, Grant

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


@dataclass
class DownloadReport:
    folder: Path
    downloaded: int = 0
    already_present: int = 0
    removed: list[str] = field(default_factory=list)  # no longer consented: deleted locally
    refused: list[dict[str, Any]] = field(default_factory=list)


class FolderCalls:
    """A grant's files into a folder, and revocations applied to folders; mixed into
    ``ledger.client.LedgerClient``."""

    http: httpx.Client
    _auth: dict[str, str]

    if TYPE_CHECKING:  # provided by LedgerClient, which this is mixed into

        def _url(self, path: str) -> str: ...

        def _checked(self, response: httpx.Response) -> httpx.Response: ...

        def manifest(self, grant: Grant, *, page: int = 1000) -> Iterator[dict[str, Any]]: ...

    def download(
        self,
        grant: Grant,
        folder: str | os.PathLike[str],
        *,
        batch: int = 64,
        progress: bool = True,
    ) -> DownloadReport:
        """Download the grant's available instances into ``folder`` as ``<uid>.dcm``.

        Resumable: files already there are kept (each file is written to a temporary name
        and renamed, so a file that exists is complete). Instances no longer consented are
        deleted from ``folder`` if an earlier run downloaded them.
        """
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        report = DownloadReport(target)
        wanted: list[str] = []
        for item in self.manifest(grant):
            path = local_file(target, item["sop_instance_uid"])
            if path is None:
                report.refused.append(
                    {"sop_instance_uid": item["sop_instance_uid"], "reason": NOT_A_UID}
                )
            elif not item["available"]:
                if path.exists():
                    path.unlink()
                    report.removed.append(item["sop_instance_uid"])
            elif path.exists():
                report.already_present += 1
            else:
                wanted.append(item["sop_instance_uid"])
        with Progress(progress, len(wanted)) as advance:
            for i in range(0, len(wanted), batch):
                part = wanted[i : i + batch]
                got, refused = self._archive(grant, part, target)
                report.downloaded += got
                report.refused.extend(refused)
                advance(len(part))
        return report

    def _archive(self, grant: Grant, uids: Sequence[str], target: Path) -> tuple[int, list[Any]]:
        with tempfile.TemporaryFile(dir=target) as spool:
            with self.http.stream(
                "POST",
                self._url(f"/v1/grants/{grant.id}/archive"),
                json={"sop_instance_uids": list(uids)},
                headers={**self._auth, GRANT_HEADER: grant.token},
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    self._checked(response)
                for chunk in response.iter_bytes():
                    spool.write(chunk)
            spool.seek(0)
            return unpack(spool, target)

    def apply_revocations(self, changes: dict[str, Any], folders: dict[str, Path]) -> list[Path]:
        """Delete local copies listed in a ``revocations`` answer; ``folders`` maps grant
        id → download folder. Returns the files deleted."""
        return delete_revoked(changes, folders)
