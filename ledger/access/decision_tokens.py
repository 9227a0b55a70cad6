"""Signed inference decisions: what ``POST /v1/authorize`` answers with (DESIGN §4.9).

A decision token is a JWS (``typ: ledger-decision+jwt``, five minutes) a PACS gate or a
pipeline verifies offline against the ledger's JWKS. It names the study by the SHA-256 of
its UID, never by the UID itself. Payloads are assembled from JSON pieces serialised once
per call (and kept for the next call in the same second with the same pipeline, purpose and
policy set): a token's cost is then its Ed25519 signature, not its serialisation.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ledger.access import tokens
from ledger.access.decision_log import Leaf
from ledger.clock import utcnow
from ledger.keystore import KeyRing
from ledger.provenance.merkle import leaf_hash

DECISION_TYP = "ledger-decision+jwt"
DECISION_AUDIENCE = "ledger-inference"
DECISION_SECONDS = 300


@dataclass(frozen=True)
class Decision:
    permitted: bool
    reasons: tuple[str, ...]
    policy_ids: tuple[str, ...]
    images: int


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


class DecisionSigner:
    """Signs decisions for one issuer; one per process (it keeps the shared pieces)."""

    def __init__(self, keys: KeyRing, issuer: str) -> None:
        self.keys = keys
        self.issuer = issuer
        # The claims shared by a call's tokens, and the serialised policy lists.
        self._pieces: tuple[tuple[int, str, str, str], bytes, bytes, bytes] | None = None
        self._listed: dict[tuple[str, ...], bytes] = {}

    def sign(
        self,
        decisions: Sequence[tuple[Decision, str]],
        *,
        pipeline_id: str,
        purpose: str,
        policy: str,
    ) -> tuple[list[str], list[Leaf]]:
        """One signed decision per ``(decision, study_uid)``, and the leaves that log
        them (``DecisionLog.add``)."""
        now = utcnow()
        iat = int(now.timestamp())
        # Only the jti, the verdict, the study and the policies differ between tokens.
        shared = (iat, pipeline_id, purpose, policy)
        pieces = self._pieces
        if pieces is None or pieces[0] != shared:
            exp = int((now + timedelta(seconds=DECISION_SECONDS)).timestamp())
            common = {
                "iss": self.issuer,
                "sub": pipeline_id,
                "aud": DECISION_AUDIENCE,
                "iat": iat,
                "nbf": iat,
                "exp": exp,
            }
            pieces = self._pieces = (
                shared,
                _json(common)[:-1] + b',"jti":"',
                b'","purpose":' + _json(purpose),
                b',"policy_hash":' + _json(policy) + b',"policy_ids":',
            )
        _, head, middle, tail = pieces
        listed = self._listed
        if len(listed) > 1_000:
            listed.clear()
        payloads: list[bytes] = []
        for decision, study_uid in decisions:
            verdict = "permit" if decision.permitted else "deny"
            ids = listed.get(decision.policy_ids)
            if ids is None:
                ids = listed[decision.policy_ids] = _json(list(decision.policy_ids)) + b"}"
            study = hashlib.sha256(study_uid.encode()).hexdigest().encode()
            payloads.append(
                b"".join(
                    (
                        head,
                        str(uuid.uuid4()).encode(),
                        b'","decision":"',
                        verdict.encode(),
                        middle,
                        b',"study_sha256":"',
                        study,
                        b'"',
                        tail,
                        ids,
                    )
                )
            )
        signed = tokens.sign_payloads(self.keys, DECISION_TYP, payloads)
        leaves = [
            (leaf_hash(token.encode()), "permit" if decision.permitted else "deny", pipeline_id)
            for token, (decision, _) in zip(signed, decisions, strict=True)
        ]
        return signed, leaves
