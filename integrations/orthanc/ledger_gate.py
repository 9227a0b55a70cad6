"""Enforcement at the PACS: an Orthanc plugin (for Debian's ``orthanc-python``) that lets
a request for study data through only with a valid ledger decision token for that study.

Runs inside Orthanc's embedded Python (Debian 12: CPython 3.11, the system interpreter),
so it depends on the standard library and ``cryptography`` (Debian's
``python3-cryptography``) only. The token is what ``POST /v1/authorize`` returns
(``typ: ledger-decision+jwt``): a compact JWS signed with Ed25519, checked offline against
the ledger's JWKS (fetched once and cached; fetched again for an unknown ``kid``), then its
``typ``, audience, expiry, issuer (if configured), purpose (if configured), ``decision``
(permit) and ``study_sha256`` (the SHA-256 of the StudyInstanceUID the request is for).
Optionally the plugin re-asks the ledger on each call (``Recheck``), so a withdrawal takes
effect at once rather than when the token expires (five minutes at most).

Which study a request is for: DICOMweb routes name the StudyInstanceUID
(``/dicom-web/studies/{uid}/...``); REST routes name Orthanc ids (``/studies/{id}``,
``/series/{id}``, ``/instances/{id}``), mapped to the StudyInstanceUID through Orthanc's
own index (and cached). Routes that list or search across studies (``/patients``,
``/studies``, ``/dicom-web/studies`` without a UID, ``/tools/find``, ...) are refused: no
decision covers them. Storing (``POST /instances``, STOW-RS) and Orthanc's own system routes
are let through; the modality side (DIMSE) is not an HTTP request and is out of scope.

Configuration (the ``LedgerGate`` section of Orthanc's JSON configuration)::

    "LedgerGate": {
      "JwksUrl": "https://ledger.example/.well-known/jwks.json",
      "Issuer": "https://ledger.example",          // optional: the tokens' iss
      "Purposes": ["ai.inference"],                 // optional: purposes accepted
      "Header": "Ledger-Decision",                  // where the token comes (default)
      "JwksCacheSeconds": 300,
      "Recheck": {                                  // optional: re-ask on every call
        "Url": "https://ledger.example",
        "ApiKeyFile": "/etc/orthanc/ledger-api-key" // a pipeline API key of the PACS
      },
      "AllowUsers": []                              // Orthanc users never filtered
    }
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

DECISION_TYP = "ledger-decision+jwt"
DECISION_AUDIENCE = "ledger-inference"
ALGORITHMS = ("EdDSA", "Ed25519")
LEEWAY = 30  # seconds of clock skew tolerated on exp and nbf


class Refused(Exception):
    """Why a request is not let through (logged by Orthanc, never sent to the caller)."""


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Jwks:
    """The ledger's public keys by ``kid``, fetched and cached."""

    def __init__(
        self,
        url: str,
        ttl: float = 300.0,
        fetch: Callable[[str], bytes] | None = None,
    ) -> None:
        self.url, self.ttl = url, ttl
        self._fetch = fetch or _get
        self._keys: dict[str, Any] = {}
        self._at = 0.0
        self._lock = threading.Lock()

    def _load(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        document = json.loads(self._fetch(self.url))
        keys = {}
        for item in document.get("keys", []):
            if item.get("kty") == "OKP" and item.get("crv") == "Ed25519" and item.get("kid"):
                keys[str(item["kid"])] = Ed25519PublicKey.from_public_bytes(_b64(item["x"]))
        self._keys, self._at = keys, time.monotonic()

    def key(self, kid: str) -> Any:
        with self._lock:
            stale = time.monotonic() - self._at > self.ttl
            if stale or (kid not in self._keys and time.monotonic() - self._at > 5):
                self._load()
            if kid not in self._keys:
                raise Refused(f"unknown key {kid[:40]!r}")
            return self._keys[kid]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 (configured URL)
        data: bytes = answer.read()
        return data


def check(
    token: str,
    study_uid: str,
    jwks: Jwks,
    *,
    issuer: str | None = None,
    purposes: frozenset[str] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The token's claims if it permits ``study_uid`` now; Refused saying why not."""
    from cryptography.exceptions import InvalidSignature

    parts = token.strip().split(".")
    if len(parts) != 3:
        raise Refused("not a compact JWS")
    try:
        header = json.loads(_b64(parts[0]))
        claims = json.loads(_b64(parts[1]))
        signature = _b64(parts[2])
    except (ValueError, TypeError) as exc:
        raise Refused("a malformed token") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise Refused("a malformed token")
    if header.get("alg") not in ALGORITHMS:
        raise Refused(f"algorithm {header.get('alg')!r} is not accepted")
    if header.get("typ") != DECISION_TYP:
        raise Refused(f"not a decision token (typ {header.get('typ')!r})")
    key = jwks.key(str(header.get("kid", "")))
    try:
        key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"))
    except (InvalidSignature, ValueError) as exc:
        raise Refused("bad signature") from exc
    moment = time.time() if now is None else now
    audience = claims.get("aud")
    if audience != DECISION_AUDIENCE and not (
        isinstance(audience, list) and DECISION_AUDIENCE in audience
    ):
        raise Refused("the token is for another audience")
    if not isinstance(claims.get("exp"), (int, float)) or claims["exp"] + LEEWAY < moment:
        raise Refused("the token has expired")
    if isinstance(claims.get("nbf"), (int, float)) and claims["nbf"] - LEEWAY > moment:
        raise Refused("the token is not valid yet")
    if issuer is not None and claims.get("iss") != issuer:
        raise Refused("the token is from another issuer")
    if purposes is not None and claims.get("purpose") not in purposes:
        raise Refused(f"the purpose {claims.get('purpose')!r} is not accepted here")
    if claims.get("decision") != "permit":
        raise Refused("the ledger denied this study")
    expected = hashlib.sha256(study_uid.encode()).hexdigest()
    if claims.get("study_sha256") != expected:
        raise Refused("the token is for another study")
    return claims


# -- which study a request is for -----------------------------------------------------------

DICOMWEB_STUDY = re.compile(r"^/dicom-web/studies/([0-9.]{1,64})(/.*)?$")
REST = re.compile(r"^/(studies|series|instances)/([0-9a-f-]{20,64})(/.*)?$")
# Routes that list or search across studies: no single decision covers them.
ACROSS = re.compile(
    r"^/(patients|studies|series|instances)/?$|^/patients/|^/dicom-web/(studies|series|instances)/?$"
    r"|^/dicom-web/(series|instances)/|^/tools/(find|create-archive|create-media|"
    r"create-media-extended|bulk-content)|^/wado(/|$)|^/(changes|exports)$"
)
STORE = re.compile(r"^/instances/?$|^/dicom-web/studies(/[0-9.]{1,64})?/?$")

StudyOf = Callable[[str, str], str | None]  # (level, orthanc id) -> StudyInstanceUID


class Gate:
    """The filter's decision for one request: allowed, or Refused with the reason."""

    def __init__(
        self,
        config: Mapping[str, Any],
        study_of: StudyOf,
        *,
        fetch: Callable[[str], bytes] | None = None,
        ask: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.header = str(config.get("Header", "Ledger-Decision")).lower()
        self.jwks = Jwks(
            str(config["JwksUrl"]), float(config.get("JwksCacheSeconds", 300)), fetch=fetch
        )
        self.issuer = config.get("Issuer")
        purposes = config.get("Purposes")
        self.purposes = frozenset(purposes) if purposes else None
        self.allow_users = frozenset(config.get("AllowUsers", []))
        self.study_of = study_of
        self.ask = ask

    def study_for(self, uri: str) -> str | None:
        """The StudyInstanceUID ``uri`` reads, None for routes that read no study data;
        Refused for routes across studies."""
        found = DICOMWEB_STUDY.match(uri)
        if found:
            return found.group(1)
        found = REST.match(uri)
        if found:
            uid = self.study_of(found.group(1), found.group(2))
            if uid is None:
                raise Refused("no such resource")
            return uid
        if ACROSS.match(uri):
            raise Refused("a route across studies: no decision covers it")
        return None

    def allow(
        self, method: str, uri: str, headers: Mapping[str, str], username: str | None = None
    ) -> None:
        if username and username in self.allow_users:
            return
        if method == "POST" and STORE.match(uri):
            return  # storing: a modality or the ledger's sync pushing images in
        study = self.study_for(uri)
        if study is None:
            return
        token = headers.get(self.header, "")
        if not token:
            raise Refused(f"no {self.header} header")
        claims = check(token, study, self.jwks, issuer=self.issuer, purposes=self.purposes)
        if self.ask is not None and not self.ask(str(claims.get("purpose")), study):
            raise Refused("the ledger no longer permits this study")


def basic_user(authorization: str) -> str | None:
    """The user of an HTTP Basic ``Authorization`` header. orthanc-python 4.0 does not pass
    the user to the filter; Orthanc has checked the credentials before calling it (with
    ``AuthenticationEnabled``), so the header names an authenticated user."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, _ = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user if sep else None


def recheck(url: str, api_key: str) -> Callable[[str, str], bool]:
    """Ask the ledger's ``POST /v1/authorize`` again (the PACS's own pipeline key)."""

    def ask(purpose: str, study: str) -> bool:
        body = json.dumps({"purpose": purpose, "study_instance_uid": study}).encode()
        request = urllib.request.Request(  # noqa: S310 (the configured ledger URL)
            url.rstrip("/") + "/v1/authorize",
            data=body,
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
                return bool(json.loads(answer.read()).get("decision") == "permit")
        except (urllib.error.URLError, ValueError):
            return False  # fail closed

    return ask


# -- the Orthanc glue ---------------------------------------------------------------------------

try:
    import orthanc  # type: ignore[import-not-found]
except ImportError:  # imported outside Orthanc (tests, tools)
    orthanc = None


def _orthanc_study_of() -> StudyOf:
    cache: dict[tuple[str, str], str] = {}
    parent = {"instances": ("ParentSeries", "series"), "series": ("ParentStudy", "studies")}

    def study_of(level: str, orthanc_id: str) -> str | None:
        key = (level, orthanc_id)
        if key in cache:
            return cache[key]
        try:
            resource = json.loads(orthanc.RestApiGet(f"/{level}/{orthanc_id}"))
        except Exception:  # Orthanc raises OrthancException for an unknown id
            return None
        if level == "studies":
            uid = resource.get("MainDicomTags", {}).get("StudyInstanceUID")
        else:
            field, up = parent[level]
            uid = study_of(up, resource[field])
        if uid:
            cache[key] = uid
        return uid

    return study_of


def _method(value: Any) -> str:
    names = {getattr(orthanc.HttpMethod, n): n for n in ("GET", "POST", "PUT", "DELETE")}
    return names.get(value, str(value))


def _install() -> None:
    config = json.loads(orthanc.GetConfiguration()).get("LedgerGate")
    if not config or "JwksUrl" not in config:
        orthanc.LogError("LedgerGate: no LedgerGate.JwksUrl in the configuration; refusing all")
        orthanc.RegisterIncomingHttpRequestFilter(lambda uri, **request: False)
        return
    ask = None
    again = config.get("Recheck")
    if again:
        with open(again["ApiKeyFile"]) as f:
            ask = recheck(str(again["Url"]), f.read().strip())
    gate = Gate(config, _orthanc_study_of(), ask=ask)

    def incoming(uri: str, **request: Any) -> bool:
        headers = {str(k).lower(): str(v) for k, v in (request.get("headers") or {}).items()}
        try:
            user = request.get("username") or basic_user(headers.get("authorization", ""))
            gate.allow(_method(request.get("method")), uri, headers, user)
        except Refused as exc:
            orthanc.LogWarning(f"LedgerGate: refused {uri}: {exc}")
            return False
        except Exception as exc:  # fail closed on anything unexpected
            orthanc.LogError(f"LedgerGate: error on {uri}: {type(exc).__name__}: {exc}")
            return False
        return True

    orthanc.RegisterIncomingHttpRequestFilter(incoming)
    orthanc.LogWarning("LedgerGate: study data needs a ledger decision token")


if orthanc is not None:
    _install()
