"""Grant tokens: sign, verify offline from the JWKS, and refuse every kind of bad token."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey
from joserfc import jwt
from joserfc.jwk import OctKey, OKPKey

from ledger.access import tokens
from ledger.access.tokens import (
    GRANT_TYP,
    PARALLEL_AT,
    InvalidToken,
    keys_from_jwks,
    payload,
    public_keys,
    sign,
    sign_payloads,
    verify,
)
from ledger.config import JwsAlg
from ledger.keystore import KeyRing, create_keys, load_keyring, rotate_signing_key

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


@pytest.fixture
def keys(tmp_path: Path) -> KeyRing:
    create_keys(tmp_path / "keys")
    return load_keyring(tmp_path / "keys", "EdDSA")


def _jwks(keys: KeyRing) -> dict[str, object]:
    return {"keys": [k.jwk().as_dict(private=False) for k in keys.signing.values()]}


def _header(token: str) -> dict[str, object]:
    header: dict[str, object] = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    return header


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
    claims = verify(token, keys_from_jwks(_jwks(keys)), typ=GRANT_TYP, audience="ledger-release")
    assert claims["image_count"] == 1_000_000
    assert _header(token) == {"alg": "EdDSA", "typ": GRANT_TYP, "kid": keys.active.kid}


def test_the_algorithm_is_eddsa_unless_ledger_jws_alg_says_ed25519(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_keys(tmp_path / "keys")
    monkeypatch.delenv("LEDGER_JWS_ALG", raising=False)
    assert _header(sign(load_keyring(tmp_path / "keys"), GRANT_TYP, _claims()))["alg"] == "EdDSA"
    monkeypatch.setenv("LEDGER_JWS_ALG", "Ed25519")
    ring = load_keyring(tmp_path / "keys")
    assert _header(sign(ring, GRANT_TYP, _claims()))["alg"] == "Ed25519"
    assert [k["alg"] for k in _jwks(ring)["keys"]] == ["Ed25519"]  # type: ignore[union-attr]


@pytest.mark.parametrize(("before", "after"), [("EdDSA", "Ed25519"), ("Ed25519", "EdDSA")])
def test_tokens_from_before_a_switch_and_a_rotation_still_verify(
    tmp_path: Path, before: JwsAlg, after: JwsAlg
) -> None:
    create_keys(tmp_path / "keys")
    old = sign(load_keyring(tmp_path / "keys", before), GRANT_TYP, _claims())
    rotate_signing_key(tmp_path / "keys")
    ring = load_keyring(tmp_path / "keys", after)
    new = sign(ring, GRANT_TYP, _claims(jti="g-2"))
    jwks = _jwks(ring)
    entries = jwks["keys"]
    assert isinstance(entries, list)
    assert [(k["use"], k["alg"]) for k in entries] == [("sig", after)] * 2
    for token, jti, alg in [(old, "g-1", before), (new, "g-2", after)]:
        assert _header(token)["alg"] == alg
        assert verify(token, keys_from_jwks(jwks), typ=GRANT_TYP)["jti"] == jti
        assert verify(token, public_keys(ring), typ=GRANT_TYP)["jti"] == jti


def test_keys_from_jwks_takes_ed25519_signing_keys_under_either_name(keys: KeyRing) -> None:
    entry = keys.active.jwk().as_dict(private=False)
    base = {k: v for k, v in entry.items() if k != "alg"}
    kept = [base | {"kid": "a", "alg": "EdDSA"}, base | {"kid": "b", "alg": "Ed25519"}]
    kept.append(base | {"kid": "c"})
    skipped = [base | {"kid": "d", "alg": "ES256"}, base | {"kid": "e", "use": "enc"}]
    assert sorted(keys_from_jwks({"keys": kept + skipped})) == ["a", "b", "c"]


def test_only_ed25519_is_accepted(keys: KeyRing) -> None:
    kid = keys.active.kid
    ed448 = OKPKey.import_key(Ed448PrivateKey.generate())
    token = jwt.encode(
        {"alg": "EdDSA", "typ": GRANT_TYP, "kid": kid}, _claims(), ed448, algorithms=["EdDSA"]
    )
    with pytest.raises(InvalidToken, match="Ed448 key; only Ed25519"):
        verify(token, {kid: OKPKey.import_key(ed448.as_dict(private=False))}, typ=GRANT_TYP)
    with pytest.raises(InvalidToken, match="does not verify"):
        verify(token, public_keys(keys), typ=GRANT_TYP)
    secret = OctKey.generate_key(256)
    token = jwt.encode({"alg": "HS256", "typ": GRANT_TYP, "kid": kid}, _claims(), secret)
    with pytest.raises(InvalidToken, match="'HS256' is not accepted"):
        verify(token, public_keys(keys), typ=GRANT_TYP)


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


def test_a_batch_signed_in_two_threads_keeps_its_order(
    keys: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``PARALLEL_AT`` payloads, with a core idle, half are signed in a second
    thread: every token verifies and carries its own payload, in the order given."""
    monkeypatch.setattr(tokens, "_core_idle", lambda: True)
    count = 2 * PARALLEL_AT + 1
    signed = sign_payloads(keys, GRANT_TYP, [payload(_claims(jti=f"g-{n}")) for n in range(count)])
    public = keys_from_jwks(_jwks(keys))
    assert [verify(t, public, typ=GRANT_TYP, audience="ledger-release")["jti"] for t in signed] == [
        f"g-{n}" for n in range(count)
    ]


def test_a_verified_token_is_checked_against_the_clock_again_not_its_signature(
    keys: KeyRing, tmp_path: Path
) -> None:
    """``Verified``: a grant presented again skips its signature, never its expiry,
    audience or key."""
    from datetime import UTC, datetime, timedelta

    from ledger.access.tokens import Verified

    cache = Verified()
    token = sign(keys, GRANT_TYP, _claims(exp=int(time.time()) + 60))
    published = public_keys(keys)
    assert public_keys(keys)[keys.active.kid] is published[keys.active.kid]  # imported once
    first = cache.verify(token, published, typ=GRANT_TYP, audience="ledger-release")
    assert cache.verify(token, published, typ=GRANT_TYP, audience="ledger-release") == first
    later = datetime.now(UTC) + timedelta(minutes=5)
    with pytest.raises(InvalidToken, match="expired"):
        cache.verify(token, published, typ=GRANT_TYP, audience="ledger-release", now=later)
    with pytest.raises(InvalidToken, match="not 'elsewhere'"):
        cache.verify(token, published, typ=GRANT_TYP, audience="elsewhere")
    # The ring without the key that signed it: not accepted from the cache either.
    create_keys(tmp_path / "other")
    other = public_keys(load_keyring(tmp_path / "other", "EdDSA"))
    with pytest.raises(InvalidToken, match="unknown key"):
        cache.verify(token, other, typ=GRANT_TYP, audience="ledger-release")
    # A forgery of a cached token is a different string: verified, and refused.
    head, body, signature = token.split(".")
    forged = ".".join([head, body, ("A" if signature[0] != "A" else "B") + signature[1:]])
    with pytest.raises(InvalidToken):
        cache.verify(forged, published, typ=GRANT_TYP, audience="ledger-release")
