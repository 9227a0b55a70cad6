"""Signed tokens: grants (and, later, inference decisions) as compact JWS.

Header ``alg: Ed25519`` (RFC 9864's fully specified name; joserfc accepts it only when
asked explicitly), ``typ`` naming the token kind, ``kid`` the RFC 7638 thumbprint of the
key in ``/.well-known/jwks.json``. Verification refuses, each with its own message: a
different ``typ``, an unknown ``kid``, a bad signature, an expired or not-yet-valid token,
the wrong audience. It needs only the public JWKS, so pipelines can check a grant offline.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import OKPKey

from ledger.dbtypes import utcnow
from ledger.errors import Forbidden
from ledger.keystore import KeyRing

ALGORITHM = "Ed25519"
GRANT_TYP = "ledger-grant+jwt"
LEEWAY_SECONDS = 30
REQUIRED = ("iss", "sub", "aud", "iat", "nbf", "exp", "jti")


class InvalidToken(Forbidden):
    """A token that must not be honoured; the message says why."""

    code, title = "invalid-token", "Invalid token"


def sign(keys: KeyRing, typ: str, claims: Mapping[str, Any]) -> str:
    header = {"alg": ALGORITHM, "typ": typ, "kid": keys.active.kid}
    return jwt.encode(header, dict(claims), keys.active.jwk(), algorithms=[ALGORITHM])


def public_keys(keys: KeyRing) -> dict[str, OKPKey]:
    return {kid: OKPKey.import_key(k.private.public_key()) for kid, k in keys.signing.items()}


def keys_from_jwks(jwks: Mapping[str, Any]) -> dict[str, OKPKey]:
    """Public keys by kid from a JWKS document (what pipelines fetch and cache)."""
    out = {}
    for item in jwks.get("keys", []):
        if item.get("kty") == "OKP" and item.get("crv") == "Ed25519" and item.get("kid"):
            out[str(item["kid"])] = OKPKey.import_key(dict(item))
    return out


def _header(token: str) -> dict[str, Any]:
    try:
        encoded = token.split(".")[0]
        header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, IndexError, binascii.Error) as exc:
        raise InvalidToken("not a compact JWS") from exc
    if not isinstance(header, dict):
        raise InvalidToken("not a compact JWS")
    return header


def verify(
    token: str,
    keys: Mapping[str, OKPKey],
    *,
    typ: str,
    audience: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The token's claims, or InvalidToken saying exactly what is wrong."""
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 8192:
        raise InvalidToken("not a compact JWS")
    header = _header(token)
    if header.get("typ") != typ:
        raise InvalidToken(f"wrong token type {header.get('typ')!r}; expected {typ}")
    if header.get("alg") != ALGORITHM:
        raise InvalidToken(f"algorithm {header.get('alg')!r} is not accepted")
    key = keys.get(str(header.get("kid")))
    if key is None:
        raise InvalidToken("signed by an unknown key")
    try:
        claims = dict(jwt.decode(token, key, algorithms=[ALGORITHM]).claims)
    except BadSignatureError as exc:
        raise InvalidToken("the signature does not verify: the token was altered") from exc
    except (JoseError, ValueError) as exc:
        raise InvalidToken(f"malformed token ({type(exc).__name__})") from exc
    missing = [c for c in REQUIRED if c not in claims]
    if missing:
        raise InvalidToken(f"missing claim(s) {', '.join(missing)}")
    moment = int((now or utcnow()).timestamp())
    if not isinstance(claims["exp"], int) or claims["exp"] <= moment - LEEWAY_SECONDS:
        raise InvalidToken("the token has expired")
    if not isinstance(claims["nbf"], int) or claims["nbf"] > moment + LEEWAY_SECONDS:
        raise InvalidToken("the token is not valid yet")
    if audience is not None and claims["aud"] != audience:
        raise InvalidToken(f"the token is for {claims['aud']!r}, not {audience!r}")
    return claims
