"""Signed tokens: grants and inference decisions as compact JWS.

Whoever receives a token checks it offline with the JOSE library of their own language,
so the header says ``alg: EdDSA`` (RFC 8037) by default: every maintained library verifies
that, while RFC 9864's fully specified ``Ed25519`` is still refused by some (PyJWT among
them). ``LEDGER_JWS_ALG=Ed25519`` issues the new name where every verifier knows it; the
JWKS names the configured one in each key's ``alg``, since libraries that pick keys by
``alg`` would otherwise find none. Verification here accepts both names, so tokens issued
before a switch keep verifying, but only with an Ed25519 key: ``EdDSA`` alone would also
admit Ed448. joserfc is told both names because it refuses ``Ed25519`` unless asked, and
its warning that RFC 9864 deprecates ``EdDSA`` is silenced because issuing it is the point.

``typ`` names the token kind, ``kid`` is the RFC 7638 thumbprint of the key in
``/.well-known/jwks.json``. Verification refuses, each with its own message: a different
``typ``, an unknown ``kid``, a bad signature, an expired or not-yet-valid token, the wrong
audience. It needs only the public JWKS, so pipelines can check a grant offline.

Tokens are assembled here and signed with the Ed25519 key itself (RFC 7515 §7.1: base64url
header, payload and signature), not by a JOSE library: a decision token is signed on every
authorize call, and a library's encode cost three times the signature (importing the key as
a JWK, checking the header, serialising twice). The protected header is built once per
(alg, typ, kid). Verification still goes through joserfc, and the interop tests verify
what is issued with PyJWT, jwcrypto, joserfc and Node's jose.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError, SecurityWarning
from joserfc.jwk import OKPKey

from ledger import cpu
from ledger.clock import utcnow
from ledger.errors import Forbidden
from ledger.keystore import KeyRing
from ledger.limits import json_too_deep

if TYPE_CHECKING:  # the SDK imports this module and must not load pydantic
    from ledger.config import JwsAlg

ALGORITHMS: tuple[JwsAlg, ...] = ("EdDSA", "Ed25519")
GRANT_TYP = "ledger-grant+jwt"
LEEWAY_SECONDS = 30
REQUIRED = ("iss", "sub", "aud", "iat", "nbf", "exp", "jti")

warnings.filterwarnings("ignore", "EdDSA is deprecated", SecurityWarning)


class InvalidToken(Forbidden):
    """A token that must not be honoured; the message says why."""

    code, title = "invalid-token", "Invalid token"


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@lru_cache(maxsize=64)
def _protected(alg: str, typ: str, kid: str) -> bytes:
    """The encoded protected header and its dot: the same for every token of a kind."""
    return _b64(json.dumps({"alg": alg, "typ": typ, "kid": kid}, separators=(",", ":")).encode())


def payload(claims: Mapping[str, Any]) -> bytes:
    """The claims as compact JSON (NaN refused: it is not JSON)."""
    return json.dumps(dict(claims), separators=(",", ":"), allow_nan=False).encode()


def sign(keys: KeyRing, typ: str, claims: Mapping[str, Any]) -> str:
    return sign_payloads(keys, typ, [payload(claims)])[0]


# Payloads in one call from which half are signed in a second thread, when a core is
# idle: the Ed25519 signature releases the GIL and is most of a token's cost, so 1,000
# payloads sign in 15 us each instead of 27 with the second core free; with it busy the
# two threads took longer than one (measured on a 2-core machine), hence the check. A
# handful of tokens is not worth the hand-off.
PARALLEL_AT = 200
_helper: tuple[int, Any] | None = None  # (pid, executor): a forked worker makes its own
_helper_lock = threading.Lock()


def _signer() -> Any:
    global _helper
    with _helper_lock:
        if _helper is None or _helper[0] != os.getpid():
            from concurrent.futures import ThreadPoolExecutor  # only batches need it

            _helper = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="ledger-sign"))
        return _helper[1]


def _core_idle() -> bool:
    """Whether a core is idle now: fewer runnable threads than cores, this one included
    (not idle where unknown)."""
    running = cpu.runnable()
    return running is not None and running < cpu.cores()


def _sign_all(head: bytes, private: Any, payloads: Sequence[bytes]) -> list[str]:
    signed = []
    for claims in payloads:
        signing_input = head + _b64(claims)
        signed.append((signing_input + b"." + _b64(private.sign(signing_input))).decode("ascii"))
    return signed


def sign_payloads(keys: KeyRing, typ: str, payloads: Iterable[bytes]) -> list[str]:
    """One compact JWS per JSON payload, all with the active key (batch authorize builds
    the payloads from shared pieces, ``payload`` one at a time)."""
    key = keys.active
    head = _protected(key.alg, typ, key.kid) + b"."
    items = payloads if isinstance(payloads, Sequence) else list(payloads)
    if len(items) < PARALLEL_AT or not _core_idle():
        return _sign_all(head, key.private, items)
    half = len(items) // 2
    second = _signer().submit(_sign_all, head, key.private, items[half:])
    return _sign_all(head, key.private, items[:half]) + list(second.result())


def public_keys(keys: KeyRing) -> dict[str, OKPKey]:
    """The ring's public keys as JWKs by kid, imported once per set of keys rather than
    on every release call."""
    kids = frozenset((kid, k.public_bytes) for kid, k in keys.signing.items())
    imported = _imported.get(kids)
    if imported is None:
        imported = {
            kid: OKPKey.import_key(k.private.public_key()) for kid, k in keys.signing.items()
        }
        if len(_imported) >= 8:
            _imported.clear()
        _imported[kids] = imported
    return dict(imported)


_imported: dict[frozenset[tuple[str, bytes]], dict[str, OKPKey]] = {}


def keys_from_jwks(jwks: Mapping[str, Any]) -> dict[str, OKPKey]:
    """Public keys by kid from a JWKS document (what pipelines fetch and cache).

    A key is taken whichever of the two names its ``alg`` gives, and imported without it,
    so it verifies tokens under either name (the JWKS names only the one issued now)."""
    out = {}
    for item in jwks.get("keys", []):
        if (
            item.get("kty") == "OKP"
            and item.get("crv") == "Ed25519"
            and item.get("kid")
            and item.get("alg") in (None, *ALGORITHMS)
            and item.get("use", "sig") == "sig"
        ):
            fields = {k: v for k, v in item.items() if k != "alg"}
            out[str(item["kid"])] = OKPKey.import_key(fields)
    return out


def _header(token: str) -> dict[str, Any]:
    try:
        encoded = token.split(".")[0]
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        if json_too_deep(raw):  # before parsing: deep nesting exhausts the parser's stack
            raise InvalidToken("not a compact JWS (its header nests too deep)")
        header = json.loads(raw)
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
    if header.get("alg") not in ALGORITHMS:
        raise InvalidToken(f"algorithm {header.get('alg')!r} is not accepted")
    key = keys.get(str(header.get("kid")))
    if key is None:
        raise InvalidToken("signed by an unknown key")
    if key.curve_name != "Ed25519":
        raise InvalidToken(f"signed by a {key.curve_name} key; only Ed25519 is accepted")
    try:
        claims = dict(jwt.decode(token, key, algorithms=list(ALGORITHMS)).claims)
    except BadSignatureError as exc:
        raise InvalidToken("the signature does not verify: the token was altered") from exc
    except (JoseError, ValueError) as exc:
        raise InvalidToken(f"malformed token ({type(exc).__name__})") from exc
    _check_claims(claims, audience, now)
    return claims


def _check_claims(claims: Mapping[str, Any], audience: str | None, now: datetime | None) -> None:
    """What a token's claims must say at ``now``, beyond its signature."""
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


class Verified:
    """Claims of tokens whose signatures have been checked, so a token presented again
    (a grant, on every release call of a pipeline) costs a dictionary lookup and the
    clock checks instead of parsing and an Ed25519 verification.

    A signature's validity depends only on the token and the key: a hit needs the very
    key object it was verified with to be the one the keys given name by its kid
    (``public_keys`` hands out the same objects while the ring is unchanged), so a key
    taken out of or replaced in the ring verifies anew, or not at all. Expiry,
    not-before and audience are checked again on every hit. Only tokens that verified
    are kept; bounded in size."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._entries: dict[tuple[str, str], tuple[str, OKPKey, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def verify(
        self,
        token: str,
        keys: Mapping[str, OKPKey],
        *,
        typ: str,
        audience: str | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        entry = self._entries.get((typ, token))
        if entry is not None and keys.get(entry[0]) is entry[1]:
            claims = dict(entry[2])
            _check_claims(claims, audience, now)
            return claims
        claims = verify(token, keys, typ=typ, audience=audience, now=now)
        kid = str(_header(token).get("kid"))
        with self._lock:
            if len(self._entries) >= self.size:
                self._entries.clear()
            self._entries[(typ, token)] = (kid, keys[kid], dict(claims))
        return claims
