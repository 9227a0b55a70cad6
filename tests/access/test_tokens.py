"""Grant tokens: sign, verify offline from the JWKS, and refuse every kind of bad token."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from ledger.access.tokens import GRANT_TYP, InvalidToken, keys_from_jwks, public_keys, sign, verify
from ledger.keystore import KeyRing, create_keys, load_keyring, rotate_signing_key


@pytest.fixture
def keys(tmp_path: Path) -> KeyRing:
    create_keys(tmp_path / "keys")
    return load_keyring(tmp_path / "keys")


def _claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    base = {
        "iss": "urn:ledger:test",
        "sub": "pipeline-1",
        "aud": "ledger-release",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "jti": "g-1",
        "purpose": "ai.training",
        "manifest_root": "ab" * 32,
        "image_count": 1_000_000,
        "policy_hash": "cd" * 32,
        "as_of": "2026-11-25T00:00:00Z",
        "log_index": 123456,
    }
    return base | over


def test_round_trip_offline_from_jwks_and_size(keys: KeyRing) -> None:
    token = sign(keys, GRANT_TYP, _claims())
    assert len(token) < 2048
    jwks = {"keys": [k.jwk().as_dict(private=False) for k in keys.signing.values()]}
    claims = verify(token, keys_from_jwks(jwks), typ=GRANT_TYP, audience="ledger-release")
    assert claims["image_count"] == 1_000_000
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "Ed25519", "typ": GRANT_TYP, "kid": keys.active.kid}


def test_rotated_keys_still_verify_old_tokens(keys: KeyRing, tmp_path: Path) -> None:
    old = sign(keys, GRANT_TYP, _claims())
    rotate_signing_key(tmp_path / "keys")
    rotated = load_keyring(tmp_path / "keys")
    assert rotated.active.kid != keys.active.kid
    assert verify(old, public_keys(rotated), typ=GRANT_TYP)["jti"] == "g-1"


def _tamper(token: str) -> str:
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["image_count"] = 2
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{head}.{forged}.{sig}"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda k: sign(k, GRANT_TYP, _claims(exp=int(time.time()) - 120)), "expired"),
        (lambda k: sign(k, GRANT_TYP, _claims(nbf=int(time.time()) + 3600)), "not valid yet"),
        (lambda k: sign(k, "ledger-decision+jwt", _claims()), "wrong token type"),
        (lambda k: _tamper(sign(k, GRANT_TYP, _claims())), "altered"),
        (lambda k: sign(k, GRANT_TYP, _claims(aud="elsewhere")), "not 'ledger-release'"),
        (lambda k: sign(k, GRANT_TYP, {"sub": "x"}), "missing claim"),
        (lambda k: "not.a.token", "not a compact JWS"),
        (lambda k: "nodots", "not a compact JWS"),
    ],
)
def test_bad_tokens_are_refused(keys: KeyRing, make: object, message: str) -> None:
    token = make(keys)  # type: ignore[operator]
    with pytest.raises(InvalidToken, match=message):
        verify(token, public_keys(keys), typ=GRANT_TYP, audience="ledger-release")


def test_unknown_key_is_refused(keys: KeyRing, tmp_path: Path) -> None:
    create_keys(tmp_path / "other")
    stranger = load_keyring(tmp_path / "other")
    token = sign(stranger, GRANT_TYP, _claims())
    with pytest.raises(InvalidToken, match="unknown key"):
        verify(token, public_keys(keys), typ=GRANT_TYP)


def test_cli_rotate_and_list(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ledger.cli import app

    create_keys(tmp_path / "home" / "keys")
    runner = CliRunner()
    home = ["--home", str(tmp_path / "home")]
    r = runner.invoke(app, ["keys", "rotate", "--json", *home])
    assert r.exit_code == 0, r.output
    new = json.loads(r.output)["kid"]
    r = runner.invoke(app, ["keys", "list", "--json", *home])
    listed = json.loads(r.output)
    assert len(listed) == 2
    assert [k["kid"] for k in listed if k["active"]] == [new]
