"""Grants and decision tokens verify with the JOSE libraries pipelines use, from the JWKS
alone: PyJWT, jwcrypto and joserfc in Python, ``jose`` from npm under Node.

Each verifier gets only what a recipient has, the document at ``/.well-known/jwks.json``
and a token, and checks the signature, ``typ``, ``aud`` and expiry the way its library
does. Tokens come from the running app: a grant from the approve flow and a decision
from ``POST /v1/authorize``, under both ``LEDGER_JWS_ALG`` settings.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwcrypto.jwk
import jwcrypto.jws
import jwcrypto.jwt
import jwt
import pytest
from fastapi.testclient import TestClient
from joserfc import errors as joserfc_errors
from joserfc import jwt as joserfc_jwt
from joserfc.jwk import KeySet
from jwt.algorithms import get_default_algorithms
from sqlalchemy import Engine, select
from sqlmodel import col

from ledger.access import tokens
from ledger.access.decision_tokens import DECISION_AUDIENCE, DECISION_TYP
from ledger.client import LedgerClient
from ledger.config import Settings
from ledger.db import snapshot
from ledger.images.models import Image
from ledger.keystore import load_keyring
from ledger.principals.models import Role
from tests.access.test_access_api import _file
from tests.conftest import MakePrincipal, auth

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")

JS = Path(__file__).parent / "js"
GRANT_AUDIENCE = "ledger-release"
REQUIRED = ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"]

Header = dict[str, Any]
Claims = dict[str, Any]
Verifier = Callable[[dict[str, Any], str, str, str], tuple[Header, Claims]]


class Refused(Exception):
    """A library refused the token; ``why`` is one of signature, typ, audience, expired."""

    def __init__(self, why: str, detail: object = None) -> None:
        super().__init__(f"{why}: {detail}")
        self.why = why


@dataclass(frozen=True)
class Issued:
    alg: str
    jwks: dict[str, Any]
    grant_id: str
    grant: str
    decision: str
    expired: str  # the grant's claims signed again by the ledger's key, an hour past exp


@pytest.fixture(params=["EdDSA", "Ed25519"])
def settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    return settings.model_copy(update={"jws_alg": request.param})


def _claims_of(token: str) -> Claims:
    body = token.split(".")[1]
    claims: Claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return claims


def _altered(token: str) -> str:
    head, _, sig = token.split(".")
    claims = _claims_of(token) | {"image_count": 10**9}
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{head}.{body}.{sig}"


@pytest.fixture
def issued(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    world: dict[str, str],
    make_principal: MakePrincipal,
) -> Issued:
    pipeline, steward = make_principal(Role.pipeline), make_principal(Role.steward)
    request = _file(client, pipeline, world["all"]).json()
    approved = client.post(
        f"/v1/access-requests/{request['id']}/approve",
        headers=auth(steward),
        json={"comment": "ethics approval on file"},
    )
    assert approved.status_code == 200, approved.text
    with snapshot(engine) as session:
        study = session.execute(select(col(Image.study_uid)).limit(1)).scalar_one()
    decided = client.post(
        "/v1/authorize",
        headers=auth(pipeline),
        json={"purpose": "ai.inference", "study_instance_uid": study},
    )
    assert decided.status_code == 200, decided.text
    grant = approved.json()["grant"]
    now = int(time.time())
    stale = _claims_of(grant) | {"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}
    keys = load_keyring(settings.keys_dir, settings.jws_alg)
    return Issued(
        alg=settings.jws_alg,
        jwks=client.get("/.well-known/jwks.json").json(),
        grant_id=approved.json()["grant_id"],
        grant=grant,
        decision=decided.json()["token"],
        expired=tokens.sign(keys, tokens.GRANT_TYP, stale),
    )


def _algs(jwks: dict[str, Any]) -> list[str]:
    """What a recipient configured from the JWKS accepts: the algorithms it names."""
    return sorted({k["alg"] for k in jwks["keys"]})


def _pyjwt(jwks: dict[str, Any], token: str, typ: str, audience: str) -> tuple[Header, Claims]:
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    try:
        decoded = jwt.decode_complete(token, key, audience=audience, options={"require": REQUIRED})
    except jwt.InvalidSignatureError as exc:
        raise Refused("signature", exc) from exc
    except jwt.InvalidAudienceError as exc:
        raise Refused("audience", exc) from exc
    except jwt.ExpiredSignatureError as exc:
        raise Refused("expired", exc) from exc
    if decoded["header"].get("typ") != typ:  # PyJWT leaves typ to the caller
        raise Refused("typ", decoded["header"])
    return decoded["header"], decoded["payload"]


def _jwcrypto(jwks: dict[str, Any], token: str, typ: str, audience: str) -> tuple[Header, Claims]:
    # Given the whole set, jwcrypto reports a bad signature as "no working key"; the key
    # the header names, taken from the set, gets a signature error of its own.
    kid = jwcrypto.jws.JWS.from_jose_token(token).jose_header["kid"]
    key = jwcrypto.jwk.JWKSet.from_json(json.dumps(jwks)).get_key(kid)
    check: dict[str, Any] = dict.fromkeys(REQUIRED) | {"aud": audience}
    try:
        parsed = jwcrypto.jwt.JWT(
            jwt=token, key=key, algs=_algs(jwks), expected_type="JWS", check_claims=check
        )
    except jwcrypto.jws.InvalidJWSSignature as exc:
        raise Refused("signature", exc) from exc
    except jwcrypto.jwt.JWTExpired as exc:
        raise Refused("expired", exc) from exc
    except jwcrypto.jwt.JWTInvalidClaimValue as exc:
        raise Refused("audience", exc) from exc
    header: Header = json.loads(parsed.header)
    if header.get("typ") != typ:  # jwcrypto's "typ" check is of a claim, not the header
        raise Refused("typ", header)
    return header, json.loads(parsed.claims)


def _joserfc(jwks: dict[str, Any], token: str, typ: str, audience: str) -> tuple[Header, Claims]:
    try:
        decoded = joserfc_jwt.decode(token, KeySet.import_key_set(jwks), algorithms=_algs(jwks))
    except joserfc_errors.BadSignatureError as exc:
        raise Refused("signature", exc) from exc
    if decoded.header.get("typ") != typ:  # joserfc leaves typ to the caller
        raise Refused("typ", decoded.header)
    essential: dict[str, Any] = {name: {"essential": True} for name in REQUIRED}
    registry = joserfc_jwt.JWTClaimsRegistry(
        **(essential | {"aud": {"essential": True, "value": audience}})
    )
    try:
        registry.validate(decoded.claims)
    except joserfc_errors.ExpiredTokenError as exc:
        raise Refused("expired", exc) from exc
    except joserfc_errors.InvalidClaimError as exc:
        raise Refused("audience" if exc.claim == "aud" else "claim", exc) from exc
    return dict(decoded.header), dict(decoded.claims)


def _header_of(token: str) -> Header:
    head = token.split(".")[0]
    header: Header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    return header


def _ledger(jwks: dict[str, Any], token: str, typ: str, audience: str) -> tuple[Header, Claims]:
    """Our own verifier (the SDK's), given the same JWKS and nothing else."""
    try:
        claims = tokens.verify(token, tokens.keys_from_jwks(jwks), typ=typ, audience=audience)
    except tokens.InvalidToken as exc:
        says = {"signature": "signature", "token type": "typ", "is for": "audience"}
        says |= {"expired": "expired"}
        why = next((w for s, w in says.items() if s in str(exc)), "other")
        raise Refused(why, exc) from exc
    return _header_of(token), claims


NODE_REFUSALS = {
    "ERR_JWS_SIGNATURE_VERIFICATION_FAILED": "signature",
    "ERR_JWT_EXPIRED": "expired",
}


def _node_verifier(node: str) -> Verifier:
    def verify(jwks: dict[str, Any], token: str, typ: str, audience: str) -> tuple[Header, Claims]:
        done = subprocess.run(
            [node, str(JS / "verify.mjs")],
            input=json.dumps({"jwks": jwks, "token": token, "typ": typ, "audience": audience}),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        if out["ok"]:
            return out["header"], out["claims"]
        claim = {"aud": "audience", "typ": "typ"}.get(out.get("claim", ""), out["code"])
        raise Refused(NODE_REFUSALS.get(out["code"], claim), out["message"])

    return verify


def _check(verify: Verifier, issued: Issued) -> None:
    """The genuine tokens verify; an altered, misdirected, mistyped or expired one does not."""
    header, claims = verify(issued.jwks, issued.grant, tokens.GRANT_TYP, GRANT_AUDIENCE)
    assert header["alg"] == issued.alg
    assert (claims["jti"], claims["aud"]) == (issued.grant_id, GRANT_AUDIENCE)
    header, claims = verify(issued.jwks, issued.decision, DECISION_TYP, DECISION_AUDIENCE)
    assert header["typ"] == DECISION_TYP
    assert claims["decision"] in {"permit", "deny"}

    refusals = [
        ("signature", _altered(issued.grant), tokens.GRANT_TYP, GRANT_AUDIENCE),
        ("audience", issued.grant, tokens.GRANT_TYP, DECISION_AUDIENCE),
        ("typ", issued.grant, DECISION_TYP, GRANT_AUDIENCE),
        ("typ", issued.decision, tokens.GRANT_TYP, DECISION_AUDIENCE),
        ("expired", issued.expired, tokens.GRANT_TYP, GRANT_AUDIENCE),
    ]
    for why, token, typ, audience in refusals:
        with pytest.raises(Refused) as refused:
            verify(issued.jwks, token, typ, audience)
        assert refused.value.why == why, refused.value


def test_jwks_names_the_issued_algorithm(issued: Issued) -> None:
    assert issued.jwks["keys"], issued.jwks
    for entry in issued.jwks["keys"]:
        assert (entry["kty"], entry["crv"], entry["use"]) == ("OKP", "Ed25519", "sig")
        assert entry["alg"] == issued.alg
        assert "d" not in entry
    assert _header_of(issued.grant)["alg"] == _header_of(issued.decision)["alg"] == issued.alg


def test_pyjwt(issued: Issued) -> None:
    if issued.alg not in get_default_algorithms():
        # PyJWT does not know RFC 9864's name: the reason EdDSA is the default.
        with pytest.raises(jwt.PyJWKSetError, match="usable keys"):
            _pyjwt(issued.jwks, issued.grant, tokens.GRANT_TYP, GRANT_AUDIENCE)
        return
    _check(_pyjwt, issued)


def test_jwcrypto(issued: Issued) -> None:
    _check(_jwcrypto, issued)


def test_joserfc(issued: Issued) -> None:
    _check(_joserfc, issued)


def test_the_ledger_and_its_sdk(
    client: TestClient, issued: Issued, make_principal: MakePrincipal
) -> None:
    _check(_ledger, issued)
    pipeline = LedgerClient(str(client.base_url), make_principal(Role.pipeline), http=client)
    assert pipeline.verify_grant(issued.grant)["jti"] == issued.grant_id
    with pytest.raises(tokens.InvalidToken, match="altered"):
        pipeline.verify_grant(_altered(issued.grant))


@pytest.fixture(scope="session")
def node() -> str:
    """Node with ``jose`` installed beside the script; installs it with ``npm ci`` when
    missing. Skips without them, unless LEDGER_REQUIRE_NODE=1 makes that a failure."""
    required = os.environ.get("LEDGER_REQUIRE_NODE") == "1"

    def missing(why: str) -> None:
        if required:
            pytest.fail(f"{why}, and LEDGER_REQUIRE_NODE=1")
        pytest.skip(why)

    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing("node or npm is not installed")
    if not (JS / "node_modules" / "jose" / "package.json").exists():
        done = subprocess.run(
            [str(npm), "ci", "--no-audit", "--no-fund"],
            cwd=JS,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            missing(f"`npm ci` in {JS} failed: {done.stderr.strip()[-500:]}")
    return str(node)


def test_node_jose(issued: Issued, node: str) -> None:
    _check(_node_verifier(node), issued)
