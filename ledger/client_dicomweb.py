"""The SDK's DICOMweb calls under a grant (QIDO-RS search, WADO-RS retrieve and metadata),
mixed into ``ledger.client.LedgerClient``; import that, not this.

Any DICOMweb client works too: point it at ``dicomweb_url(grant)`` with the headers of
``dicomweb_headers(grant)``, e.g. dicomweb-client::

    session = requests.Session(); session.headers.update(ledger.dicomweb_headers(grant))
    DICOMwebClient(url=ledger.dicomweb_url(grant), session=session).retrieve_study(uid)

Kept apart so the client stays small; like it, this loads httpx only (the multipart reader
is imported when a retrieval needs it).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol

import httpx


class Grant(Protocol):
    """What these calls need of ``ledger.client.Grant``."""

    @property
    def id(self) -> str: ...
    @property
    def token(self) -> str: ...


GRANT_HEADER = "Ledger-Grant"
DICOM_JSON = "application/dicom+json"
MULTIPART_DICOM = 'multipart/related; type="application/dicom"'
# A DICOM UID (PS3.5 §9.1): digits and dots, at most 64 characters; nothing else is put
# into a path.
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def _path(*uids: str | None) -> str:
    levels = ("studies", "series", "instances")
    parts = []
    for level, uid in zip(levels, uids, strict=False):
        if uid is None:
            break
        if len(uid) > 64 or not UID.match(uid):
            raise ValueError(f"not a DICOM UID: {uid[:70]!r}")
        parts.append(f"/{level}/{uid}")
    return "".join(parts)


class DicomwebCalls:
    """QIDO-RS and WADO-RS under a grant, as lists of DICOM JSON or of file bytes."""

    http: httpx.Client
    _auth: dict[str, str]

    if TYPE_CHECKING:  # provided by LedgerClient, which this is mixed into

        def _url(self, path: str) -> str: ...

        def _checked(self, response: httpx.Response) -> httpx.Response: ...

    def dicomweb_url(self, grant: Grant) -> str:
        """The grant's DICOMweb root (``.../studies`` and below)."""
        return self._url(f"/v1/grants/{grant.id}/dicomweb")

    def dicomweb_headers(self, grant: Grant) -> dict[str, str]:
        """The headers every DICOMweb call under ``grant`` needs: API key and grant."""
        return {**self._auth, GRANT_HEADER: grant.token}

    def _json(self, grant: Grant, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        response = self._checked(
            self.http.get(
                self.dicomweb_url(grant) + path,
                params=params,
                headers={**self.dicomweb_headers(grant), "Accept": DICOM_JSON},
            )
        )
        body = response.json()
        return [body] if isinstance(body, dict) else list(body)

    def _files(self, grant: Grant, path: str) -> list[bytes]:
        from ledger.images import multipart

        response = self._checked(
            self.http.get(
                self.dicomweb_url(grant) + path,
                headers={**self.dicomweb_headers(grant), "Accept": MULTIPART_DICOM},
            )
        )
        boundary = multipart.boundary_of(response.headers.get("content-type", ""))
        return [part.data for part in multipart.split(response.content, boundary)]

    # -- QIDO-RS ----------------------------------------------------------------------------
    def search_studies(self, grant: Grant, **filters: str) -> list[dict[str, Any]]:
        """The grant's studies eligible now, as DICOM JSON (de-identified UIDs)."""
        return self._json(grant, "/studies", filters)

    def search_series(self, grant: Grant, study_uid: str, **filters: str) -> list[dict[str, Any]]:
        """A study's series in the grant."""
        return self._json(grant, _path(study_uid) + "/series", filters)

    def search_instances(
        self, grant: Grant, study_uid: str, series_uid: str, **filters: str
    ) -> list[dict[str, Any]]:
        """A series' instances in the grant."""
        return self._json(grant, _path(study_uid, series_uid) + "/instances", filters)

    # -- WADO-RS ----------------------------------------------------------------------------
    def retrieve_study(self, grant: Grant, study_uid: str) -> list[bytes]:
        """A study's de-identified files; those no longer eligible are left out (the
        answer's ``Warning`` header counts them), LedgerAPIError 410 if none is left."""
        return self._files(grant, _path(study_uid))

    def retrieve_series(self, grant: Grant, study_uid: str, series_uid: str) -> list[bytes]:
        """A series' de-identified files (as for a study)."""
        return self._files(grant, _path(study_uid, series_uid))

    def retrieve_instance(self, grant: Grant, study_uid: str, series_uid: str, sop: str) -> bytes:
        """One de-identified file; LedgerAPIError 410 if it is no longer eligible."""
        (data,) = self._files(grant, _path(study_uid, series_uid, sop))
        return data

    def retrieve_metadata(
        self,
        grant: Grant,
        study_uid: str,
        series_uid: str | None = None,
        sop: str | None = None,
    ) -> list[dict[str, Any]]:
        """The de-identified attributes (DICOM JSON, no pixel data) of a study's, a
        series' or one instance's files: released and logged as the files are."""
        return self._json(grant, _path(study_uid, series_uid, sop) + "/metadata", {})
