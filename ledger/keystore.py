"""Key material in LEDGER_HOME: the grant/checkpoint signing keys, the pseudonym key and the
master key that wraps per-subject data keys.

Files are created with ``O_EXCL`` and mode 0600 so no key ever exists, even for an
instant, with wider permissions; the directory is 0700.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc.jwk import OKPKey

from ledger.errors import ServiceUnavailable

if TYPE_CHECKING:  # the SDK verifies tokens through this module and must not load pydantic
    from ledger.config import JwsAlg

PSEUDONYM_KEY = "pseudonym.key"
MASTER_KEY = "master.key"
SIGNING_INDEX = "signing.json"


def write_secret(path: Path, data: bytes) -> None:
    """Create ``path`` with 0600 permissions; refuse to overwrite an existing key."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def make_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def thumbprint(key: Ed25519PrivateKey) -> str:
    """RFC 7638 thumbprint of the public key, used as ``kid`` everywhere."""
    return str(OKPKey.import_key(key.public_key()).thumbprint())


@dataclass(frozen=True)
class SigningKey:
    """One Ed25519 key; ``alg`` is the JWS name its tokens carry and its JWK advertises,
    the same for every key of an installation so one verifier setting covers the JWKS."""

    kid: str
    private: Ed25519PrivateKey
    alg: JwsAlg = "EdDSA"

    @property
    def public_bytes(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def jwk(self) -> OKPKey:
        return OKPKey.import_key(self.private, {"kid": self.kid, "use": "sig", "alg": self.alg})


@dataclass(frozen=True)
class KeyRing:
    """All keys of one installation; the active signing key signs, all of them verify."""

    pseudonym_key: bytes
    master_key: bytes
    active: SigningKey
    signing: dict[str, SigningKey] = field(default_factory=dict)


def _new_signing_key(keys_dir: Path) -> SigningKey:
    private = Ed25519PrivateKey.generate()
    kid = thumbprint(private)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_secret(keys_dir / f"signing-{kid}.pem", pem)
    return SigningKey(kid, private)


def _write_index(keys_dir: Path, index: dict[str, object]) -> None:
    tmp = keys_dir / f".{SIGNING_INDEX}.{secrets.token_hex(4)}"
    write_secret(tmp, json.dumps(index, indent=2).encode())
    tmp.replace(keys_dir / SIGNING_INDEX)


def is_initialised(keys_dir: Path) -> bool:
    return (keys_dir / SIGNING_INDEX).exists()


def create_keys(keys_dir: Path) -> None:
    """Create every key of a new installation; refuses to touch existing keys."""
    make_private_dir(keys_dir)
    if is_initialised(keys_dir):
        raise FileExistsError(f"keys already exist in {keys_dir}")
    write_secret(keys_dir / PSEUDONYM_KEY, secrets.token_bytes(32))
    write_secret(keys_dir / MASTER_KEY, secrets.token_bytes(32))
    key = _new_signing_key(keys_dir)
    _write_index(keys_dir, {"active": key.kid, "keys": [key.kid]})


def rotate_signing_key(keys_dir: Path) -> SigningKey:
    """Make a new active signing key; old ones stay for verification (JWKS keeps them)."""
    index = json.loads((keys_dir / SIGNING_INDEX).read_text())
    key = _new_signing_key(keys_dir)
    _write_index(keys_dir, {"active": key.kid, "keys": [*index["keys"], key.kid]})
    return key


def load_keyring(keys_dir: Path, alg: JwsAlg | None = None) -> KeyRing:
    """The keys in ``keys_dir``, signing as ``alg``; without one, as ``LEDGER_JWS_ALG`` says,
    so every door that loads keys issues what the JWKS the server publishes names."""
    if alg is None:
        from ledger.config import get_settings

        alg = get_settings().jws_alg
    if not is_initialised(keys_dir):
        raise ServiceUnavailable(f"no keys in {keys_dir}: run `ledger init` first")
    index = json.loads((keys_dir / SIGNING_INDEX).read_text())
    signing: dict[str, SigningKey] = {}
    for kid in index["keys"]:
        private = serialization.load_pem_private_key(
            (keys_dir / f"signing-{kid}.pem").read_bytes(), password=None
        )
        if not isinstance(private, Ed25519PrivateKey):
            raise ServiceUnavailable(f"signing key {kid} is not an Ed25519 key")
        signing[kid] = SigningKey(kid, private, alg)
    return KeyRing(
        pseudonym_key=(keys_dir / PSEUDONYM_KEY).read_bytes(),
        master_key=(keys_dir / MASTER_KEY).read_bytes(),
        active=signing[index["active"]],
        signing=signing,
    )
