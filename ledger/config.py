"""Settings, read from the environment so one binary serves laptops and hospital clusters."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

JwsAlg = Literal["EdDSA", "Ed25519"]
"""The two names of Ed25519 signatures in JWS headers (``LEDGER_JWS_ALG``)."""


class Settings(BaseSettings):
    """Everything configurable, prefixed ``LEDGER_`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="LEDGER_", extra="ignore")

    home: Path = Field(
        default=Path(".ledger"),
        description="Data directory: SQLite database, keys and the object store.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; defaults to SQLite in LEDGER_HOME/ledger.db.",
    )
    default_issuer: str = Field(
        default="urn:ledger:default-issuer",
        description="Issuer used for a DICOM PatientID when IssuerOfPatientID is absent.",
    )
    max_json_bytes: int = Field(default=1 << 20, description="Largest JSON body accepted.")
    max_upload_bytes: int = Field(
        default=512 << 20, description="Largest upload (DICOM, CSV, bundles) accepted."
    )
    max_concurrent_downloads: int = Field(
        default=4, ge=1, description="Archive downloads of one grant running at once."
    )
    decision_log_interval: float = Field(
        default=2.0,
        gt=0,
        description="Seconds between log entries batching inference authorize decisions.",
    )
    console_session_minutes: int = Field(
        default=480, ge=1, le=7 * 24 * 60, description="Lifetime of a web console sign-in."
    )
    log_origin: str = Field(
        default="ledger.local/log",
        description="Origin line of signed log checkpoints (C2SP signed-note).",
    )
    checkpoint_interval: float = Field(
        default=60.0,
        ge=0,
        description="Seconds between scheduled log checkpoints; 0 turns the schedule off.",
    )
    issuer: str = Field(
        default="urn:ledger:local",
        description="`iss` of grants; set it to the public URL of this ledger.",
    )
    grant_days: int = Field(default=30, ge=1, le=3650, description="Lifetime of a grant, days.")
    jws_alg: JwsAlg = Field(
        default="EdDSA",
        description="`alg` of issued grants and decision tokens: EdDSA (RFC 8037), which "
        "every maintained JOSE library verifies, or Ed25519 (RFC 9864's fully specified "
        "name). Either verifies here, so switching keeps earlier tokens valid.",
    )
    hash_worker: bool = Field(
        default=True,
        description="Start a second process with the server to hash large manifests' "
        "Merkle roots beside it (used only where there are two cores or more).",
    )
    composition_threshold: float = Field(
        default=0.10,
        ge=0,
        le=1,
        description="Total-variation shift above which the composition report warns.",
    )
    policy_dir: Path | None = Field(
        default=None, description="Cedar policy directory (default: the packaged policies/)."
    )
    disease_ontology: Path | None = Field(
        default=None,
        description="OBO file (MONDO or DOID) giving the hierarchy of DS:MONDO:/DS:DOID: "
        "disease codes; without it those codes compare only as equal, and a refusal of one "
        "matches every disease request (read by ledger/consent/diseases.py).",
    )
    host: str = Field(default="127.0.0.1", description="Address `ledger serve` binds.")
    port: int = Field(default=8000, description="Port `ledger serve` binds.")

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'ledger.db').resolve()}"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def objects_dir(self) -> Path:
        return self.home / "objects"


def get_settings() -> Settings:
    return Settings()
