"""The SDK never touches a file outside the download folder, whatever the server says:
UIDs it receives are used as file names only when they are DICOM UIDs."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.client import Grant, LedgerClient

BAD_UIDS = ["../victim", "..", "/tmp/victim", "1.2/../../victim", "1.2.3\\..\\victim", "", "1" * 65]


def _client(handler: Any) -> LedgerClient:
    http = httpx.Client(transport=httpx.MockTransport(handler), base_url="http://ledger")
    return LedgerClient("http://ledger", "ldg_x_y", http=http)


def _victim(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "data" / "grant"
    folder.mkdir(parents=True)
    victim = tmp_path / "data" / "victim.dcm"
    victim.write_bytes(b"precious")
    return folder, victim


@pytest.mark.parametrize("uid", BAD_UIDS)
def test_download_ignores_uids_that_are_not_dicom_uids(tmp_path: Path, uid: str) -> None:
    folder, victim = _victim(tmp_path)
    (folder / "1.2.3.dcm").write_bytes(b"withdrawn")

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/grants/g1/manifest", request.url
        items = [
            {"sop_instance_uid": uid, "available": False},
            {"sop_instance_uid": "1.2.3", "available": False},
        ]
        return httpx.Response(200, json={"items": items, "next_start": None})

    report = _client(handler).download(Grant("g1", "t", {}), folder, progress=False)
    assert victim.read_bytes() == b"precious"
    assert report.removed == ["1.2.3"]
    assert not (folder / "1.2.3.dcm").exists()
    assert [r["sop_instance_uid"] for r in report.refused] == [uid]


@pytest.mark.parametrize("uid", BAD_UIDS)
def test_apply_revocations_never_deletes_outside_the_folder(tmp_path: Path, uid: str) -> None:
    folder, victim = _victim(tmp_path)
    (folder / "1.2.3.dcm").write_bytes(b"withdrawn")
    changes = {"grants": [], "instances": [{"grant_id": "g1", "sop_instance_uids": [uid, "1.2.3"]}]}
    deleted = _client(lambda r: httpx.Response(500)).apply_revocations(changes, {"g1": folder})
    assert victim.read_bytes() == b"precious"
    assert deleted == [folder / "1.2.3.dcm"]


def test_archive_members_that_are_not_uids_are_not_written(tmp_path: Path) -> None:
    folder, victim = _victim(tmp_path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("1.2.3.dcm", b"dicom")
        archive.writestr("..\\victim.dcm", b"overwritten")
        archive.writestr("...dcm", b"overwritten")
        archive.writestr("ledger-refused.json", json.dumps([]))

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/manifest"):
            items = [{"sop_instance_uid": "1.2.3", "available": True}]
            return httpx.Response(200, json={"items": items, "next_start": None})
        return httpx.Response(200, content=buffer.getvalue())

    report = _client(handler).download(Grant("g1", "t", {}), folder, progress=False)
    assert report.downloaded == 1
    assert sorted(p.name for p in folder.iterdir()) == ["1.2.3.dcm"]
    assert victim.read_bytes() == b"precious"


def test_dicomweb_calls_send_the_grant_and_name_only_uids() -> None:
    seen: list[tuple[str, str, str]] = []
    body = b"--b\r\nContent-Type: application/dicom\r\n\r\nDICM\r\n--b--\r\n"

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers["ledger-grant"], request.headers["accept"]))
        if request.headers["accept"].startswith("multipart"):
            kind = 'multipart/related; type="application/dicom"; boundary=b'
            return httpx.Response(200, content=body, headers={"content-type": kind})
        return httpx.Response(200, json=[{"0020000D": {"vr": "UI", "Value": ["2.25.1"]}}])

    client = _client(handler)
    grant = Grant("g1", "tok", {})
    assert client.search_series(grant, "2.25.1", Modality="CT")[0]["0020000D"]["Value"] == [
        "2.25.1"
    ]
    assert client.retrieve_series(grant, "2.25.1", "2.25.2") == [b"DICM"]
    assert client.retrieve_instance(grant, "2.25.1", "2.25.2", "2.25.3") == b"DICM"
    assert len(client.retrieve_metadata(grant, "2.25.1", "2.25.2")) == 1
    base = "/v1/grants/g1/dicomweb/studies/2.25.1"
    assert [path for path, _, _ in seen] == [
        f"{base}/series",
        f"{base}/series/2.25.2",
        f"{base}/series/2.25.2/instances/2.25.3",
        f"{base}/series/2.25.2/metadata",
    ]
    assert {token for _, token, _ in seen} == {"tok"}
    for bad in BAD_UIDS:
        with pytest.raises(ValueError, match="not a DICOM UID"):
            client.retrieve_study(grant, bad)
    assert len(seen) == 4
