"""``LedgerClient``: what an AI pipeline needs from the ledger, in a few calls.

    from ledger.client import LedgerClient

    with LedgerClient("https://ledger.example.org", api_key) as ledger:
        request = ledger.request_access(dataset_id, "ai.training", "Nodule detector v3")
        grant = ledger.wait_for_grant(request["id"])          # a steward approves
        ledger.download(grant, "data/nodules")                # resumable, with progress
        ledger.register_model("nodule-detector", "3.0", "weights.pt", [grant.id])
        ledger.revocations(since)                             # delete what is listed

Errors from the server are raised as ``LedgerAPIError`` carrying the problem+json body.
Grants are verified locally against the server's JWKS before use (``InvalidToken`` says why
one does not verify). Synchronous on purpose: pipelines call it from training scripts; it
keeps no state besides the JWKS cache.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx

from ledger.access import tokens
from ledger.access.tokens import InvalidToken
from ledger.client_dicomweb import GRANT_HEADER, DicomwebCalls
from ledger.client_dicomweb import Grant as GrantRef
from ledger.client_files import DownloadReport, FolderCalls, is_sha256, sha256_file

# What pipelines use. Importing this module loads httpx, joserfc and cryptography and nothing
# of the server (tests/test_sdk_imports.py keeps it so).
__all__ = [
    "GRANT_HEADER",
    "DownloadReport",
    "Grant",
    "InvalidToken",
    "LedgerAPIError",
    "LedgerClient",
]


class LedgerAPIError(Exception):
    """The server refused: ``status`` and the RFC 9457 ``problem`` say why."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        super().__init__(f"{status} {problem.get('title', '')}: {problem.get('detail', '')}")


@dataclass(frozen=True)
class Grant:
    id: str
    token: str
    claims: dict[str, Any]

    @property
    def purpose(self) -> str:
        return str(self.claims["purpose"])

    @property
    def manifest_root(self) -> str:
        return str(self.claims["manifest_root"])


class LedgerClient(DicomwebCalls, FolderCalls):
    """The SDK; its DICOMweb calls (``search_studies``, ``retrieve_study``, ...) are in
    ``ledger.client_dicomweb``, and ``download`` into a folder in ``ledger.client_files``."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 60.0,
        http: httpx.Client | None = None,
    ) -> None:
        self._own = http is None
        self.http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self.base_url = base_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._jwks: dict[str, Any] | None = None

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own:
            self.http.close()

    # -- plumbing -------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _checked(self, response: httpx.Response) -> httpx.Response:
        _raise_for_problem(response)
        return response

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {**self._auth, **kwargs.pop("headers", {})}
        response = self.http.request(method, self._url(path), headers=headers, **kwargs)
        _raise_for_problem(response)
        return response.json()

    # -- access requests and grants -------------------------------------------------------
    def request_access(
        self,
        dataset_id: str,
        purpose: str,
        justification: str,
        *,
        duo_category: str | None = None,
        irb_reference: str | None = None,
        commercial: bool = False,
        idempotency_key: str | None = None,
        **conditions: Any,
    ) -> dict[str, Any]:
        """File an access request; it comes back evaluated (counts, composition).

        ``conditions`` are the request's other fields as the API names them
        (``publication_commitment``, ``return_of_results``, ``collaborator``, ``project``,
        ``clinical_care``, ``genetic_study``, ``no_publication_before``,
        ``sensitive_research``): what consents with PUB, RTN, COL, PS, CC, GSO or MOR ask
        a request to state. A name the API does not know is refused (422)."""
        body = {
            "dataset_id": dataset_id,
            "purpose": purpose,
            "justification": justification,
            "duo_category": duo_category,
            "irb_reference": irb_reference,
            "commercial": commercial,
            **{k: v.isoformat() if isinstance(v, date) else v for k, v in conditions.items()},
        }
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        result: dict[str, Any] = self._call(
            "POST", "/v1/access-requests", json=body, headers=headers
        )
        return result

    def get_request(self, request_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/access-requests/{request_id}")
        return result

    def wait_for_grant(
        self, request_id: str, *, timeout: float = 3600.0, poll: float = 5.0
    ) -> Grant:
        """Poll until a steward decides; the grant, verified, or LedgerAPIError (409) when
        the request was rejected, or TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            request = self.get_request(request_id)
            if request.get("grant_id"):
                return self.grant(request["grant_id"])
            if request["status"] in ("rejected", "expired", "revoked"):
                raise LedgerAPIError(
                    409,
                    {
                        "title": "Not granted",
                        "detail": f"the request is {request['status']}",
                        "reviews": request.get("reviews", []),
                    },
                )
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no decision on request {request_id} within {timeout} s")
            time.sleep(poll)

    def grant(self, grant_id: str) -> Grant:
        """Fetch a grant issued to this pipeline and verify it against the JWKS."""
        info = self._call("GET", f"/v1/grants/{grant_id}")
        return Grant(grant_id, info["token"], self.verify_grant(info["token"]))

    def jwks(self, *, refresh: bool = False) -> dict[str, Any]:
        if self._jwks is None or refresh:
            response = self.http.get(self._url("/.well-known/jwks.json"))
            _raise_for_problem(response)
            self._jwks = response.json()
        return self._jwks

    def verify_grant(self, token: str) -> dict[str, Any]:
        """The grant's claims, checked offline (signature, typ, expiry, audience); a key
        the cached JWKS does not know triggers one refresh (the server rotated keys)."""
        keys = tokens.keys_from_jwks(self.jwks())
        try:
            return tokens.verify(token, keys, typ=tokens.GRANT_TYP, audience="ledger-release")
        except tokens.InvalidToken as exc:
            if "unknown key" not in str(exc):
                raise
        keys = tokens.keys_from_jwks(self.jwks(refresh=True))
        return tokens.verify(token, keys, typ=tokens.GRANT_TYP, audience="ledger-release")

    # -- release --------------------------------------------------------------------------
    def manifest(self, grant: GrantRef, *, page: int = 1000) -> Iterator[dict[str, Any]]:
        """Every manifest item: ``sop_instance_uid`` and whether it is ``available`` now."""
        start: int | None = 0
        while start is not None:
            body = self._call(
                "GET",
                f"/v1/grants/{grant.id}/manifest",
                params={"start": start, "limit": page},
                headers={GRANT_HEADER: grant.token},
            )
            yield from body["items"]
            start = body["next_start"]

    def instance(self, grant: Grant, uid: str) -> bytes:
        response = self.http.get(
            self._url(f"/v1/grants/{grant.id}/instances/{uid}"),
            headers={**self._auth, GRANT_HEADER: grant.token},
        )
        _raise_for_problem(response)
        return response.content

    # -- inference, revocations, models ---------------------------------------------------
    def authorize(
        self,
        purpose: str,
        study_instance_uid: str,
        *,
        commercial: bool = False,
        clinical_care: bool = False,
    ) -> dict[str, Any]:
        """``{decision: permit|deny, reasons, token}`` for running ``purpose`` on a study;
        ``clinical_care`` when the run is for a patient's care (consents with CC)."""
        result: dict[str, Any] = self._call(
            "POST",
            "/v1/authorize",
            json={
                "purpose": purpose,
                "study_instance_uid": study_instance_uid,
                "commercial": commercial,
                "clinical_care": clinical_care,
            },
        )
        return result

    def authorize_many(
        self,
        purpose: str,
        study_uids: Sequence[str],
        commercial: bool = False,
        *,
        clinical_care: bool = False,
    ) -> list[dict[str, Any]]:
        """``authorize`` for many studies: one answer per study in the order given
        (``decision: permit|deny|not-found``; a not-found has no token). Calls of up to
        1,000 studies each."""
        answers: list[dict[str, Any]] = []
        uids = list(study_uids)
        for i in range(0, len(uids), 1_000):
            result: dict[str, Any] = self._call(
                "POST",
                "/v1/authorize/batch",
                json={
                    "purpose": purpose,
                    "study_instance_uids": uids[i : i + 1_000],
                    "commercial": commercial,
                    "clinical_care": clinical_care,
                },
            )
            answers.extend(result["decisions"])
        return answers

    def revocations(self, since: datetime) -> dict[str, Any]:
        """Grants revoked and instances no longer usable since ``since``; call again with
        the answer's ``until``."""
        result: dict[str, Any] = self._call(
            "GET", "/v1/revocations", params={"since": since.isoformat()}
        )
        return result

    def register_model(
        self,
        name: str,
        version: str,
        artefact: str | os.PathLike[str],
        grants: Sequence[str | tuple[str, str]],
        *,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Register a model version; ``artefact`` is the weights file (hashed here) or its
        SHA-256; ``grants`` are grant ids or (grant id, usage) pairs."""
        text = os.fspath(artefact)
        digest = text if is_sha256(text) else sha256_file(Path(text))
        uses = [
            {"grant_id": g, "usage": "training"}
            if isinstance(g, str)
            else {"grant_id": g[0], "usage": g[1]}
            for g in grants
        ]
        body = {
            "name": name,
            "version": version,
            "artefact_sha256": digest,
            "grants": uses,
            "description": description,
        }
        result: dict[str, Any] = self._call(
            "POST", "/v1/models", json=body, headers={"Idempotency-Key": f"{name}@{version}"}
        )
        return result

    def model(self, model_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/models/{model_id}")
        return result


def _raise_for_problem(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        problem = response.json()
    except ValueError:
        problem = {"title": response.reason_phrase, "detail": response.text[:500]}
    raise LedgerAPIError(response.status_code, problem)
