"""Inference-time authorization (DESIGN §4.9): "may this pipeline run purpose P on this
study now?", answered with a short signed decision token.

It is the same decision path as a release (consent facts → classes → Cedar, action
``infer``), for one study. Two things make it fast enough to sit in front of a PACS router:

* Decisions are cached per (study, purpose, commercial, policy set), valid only while the
  log's decision mark is unchanged. Every change that can alter a decision (a consent, a
  withdrawal, an erasure, a new image, a policy set) is logged, and the log moves the mark
  in the same transaction, so one primary-key read per call tells whether anything
  moved; releases and decision batches do not move it. Cached entries also expire after
  ``CACHE_SECONDS`` so a consent's validity end is honoured.
* Decisions are logged in batches: one entry per flush binding the batch's tokens by the
  Merkle root of their hashes, instead of one entry per call (the tokens themselves are
  signed, so each decision is verifiable on its own).
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ledger import dialect
from ledger.access import image_rows, tokens
from ledger.access.decision import classes_of_rows
from ledger.clock import utcnow
from ledger.consent.purposes import Purpose
from ledger.errors import NotFound
from ledger.keystore import KeyRing
from ledger.policy.engine import PolicySet
from ledger.provenance import log
from ledger.provenance.merkle import leaf_hash, root_hash

DECISION_TYP = "ledger-decision+jwt"
DECISION_AUDIENCE = "ledger-inference"
DECISION_SECONDS = 300
CACHE_SECONDS = 60.0
CACHE_MAX = 100_000
FLUSH_AT = 1_000


@dataclass(frozen=True)
class Decision:
    permitted: bool
    reasons: tuple[str, ...]
    policy_ids: tuple[str, ...]
    images: int


@dataclass(frozen=True)
class _Cached:
    decision: Decision
    head: int
    until: float


class Authorizer:
    """One per process: holds the decision cache and the batch of decisions to log."""

    def __init__(self, engine: Engine, keys: KeyRing, issuer: str) -> None:
        self.engine = engine
        self.keys = keys
        self.issuer = issuer
        self._raw: Any = None
        self._mark_lock = threading.Lock()
        self._mark_sql = dialect.driver_sql(engine, log.MARK_SELECT)
        self._cache: dict[tuple[Any, ...], _Cached] = {}
        self._purposes: dict[tuple[str, bool], Purpose] = {}
        self._pending: list[tuple[bytes, str, str]] = []
        self._lock = threading.Lock()  # guards _pending
        self._flush_lock = threading.Lock()  # one flush at a time, from take to commit

    # -- the decision ---------------------------------------------------------------------
    def _purpose(self, text: str, commercial: bool) -> Purpose:
        """Parsed once per distinct text: pipelines send the same few on every call."""
        parsed = self._purposes.get((text, commercial))
        if parsed is None:
            parsed = Purpose.parse(text, commercial=commercial)  # InvalidInput if unknown
            if len(self._purposes) < 1_000:
                self._purposes[text, commercial] = parsed
        return parsed

    def _mark(self) -> int:
        """The log's decision mark, read on a connection of our own in autocommit mode:
        one round trip, no transaction, no pool checkout (this runs on every call)."""
        with self._mark_lock:
            for attempt in (1, 2):
                try:
                    if self._raw is None:
                        self._raw = self.engine.raw_connection()
                        if dialect.is_postgres(self.engine):
                            self._raw.driver_connection.autocommit = True
                    cursor = self._raw.cursor()
                    try:
                        cursor.execute(self._mark_sql, (log.DECISION_MARK,))
                        row = cursor.fetchone()
                    finally:
                        cursor.close()
                    return -1 if row is None else int(row[0])
                except Exception:
                    self.close()  # a broken connection: reconnect once, then give up
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._raw is not None:
            with suppress(Exception):
                self._raw.close()
            self._raw = None

    def decide(
        self,
        sessions: Callable[[], Session],
        policies: PolicySet,
        *,
        purpose: str,
        study_uid: str,
        commercial: bool = False,
    ) -> Decision:
        """``sessions`` makes read-only sessions; one is opened only on a cache miss."""
        parsed = self._purpose(purpose, commercial)
        head = self._mark()
        key = (study_uid, purpose, commercial, policies.hash)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and cached.head == head and cached.until > now:
            return cached.decision
        with sessions() as session:
            try:
                decision = self._compute(session, policies, parsed, study_uid)
            finally:
                session.rollback()
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[key] = _Cached(decision, head, now + CACHE_SECONDS)
        return decision

    def _compute(
        self,
        session: Session,
        policies: PolicySet,
        purpose: Purpose,
        study_uid: str,
    ) -> Decision:
        rows = image_rows.of_study(session, study_uid)
        if not rows:
            raise NotFound("no study with this StudyInstanceUID is known to the ledger")
        classes = classes_of_rows(session, policies, purpose, rows, utcnow(), action="infer")
        refused = [c for c in classes if not c.eligible]
        deciding = refused or classes
        return Decision(
            not refused,
            tuple(dict.fromkeys(r for c in deciding for r in c.reasons)),
            tuple(dict.fromkeys(p for c in deciding for p in c.policy_ids)),
            len(rows),
        )

    def token(
        self, decision: Decision, *, pipeline_id: str, purpose: str, study_uid: str, policy: str
    ) -> str:
        """The signed decision; it names the study by hash, never by UID."""
        now = utcnow()
        verdict = "permit" if decision.permitted else "deny"
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": pipeline_id,
            "aud": DECISION_AUDIENCE,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=DECISION_SECONDS)).timestamp()),
            "jti": str(uuid.uuid4()),
            "decision": verdict,
            "purpose": purpose,
            "study_sha256": hashlib.sha256(study_uid.encode()).hexdigest(),
            "policy_hash": policy,
            "policy_ids": list(decision.policy_ids),
        }
        token = tokens.sign(self.keys, DECISION_TYP, claims)
        with self._lock:
            self._pending.append((leaf_hash(token.encode()), verdict, pipeline_id))
        return token

    def refused(self, *, pipeline_id: str, study_uid: str) -> None:
        """Record an authorize call for an unknown study (logged with the next batch)."""
        digest = hashlib.sha256(study_uid.encode()).hexdigest()
        with self._lock:
            self._pending.append(
                (leaf_hash(f"unknown-study|{digest}".encode()), "unknown", pipeline_id)
            )

    # -- batched logging ------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush_pending(self, sessions: Callable[[], Session]) -> int:
        """Append one log entry for the decisions taken since the last flush, in a
        transaction of its own (the caller's may be read-only).

        Returns only once the batch is durable: flushes are serialised end to end (take,
        append, commit), so a concurrent flush waits for the one holding the decisions it
        would have logged. A batch whose append or commit fails is put back in front of
        the pending decisions, to be logged by the next flush."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                with sessions() as session:
                    self._append(session, batch)
                    session.commit()
            except BaseException:
                with self._lock:
                    self._pending = batch + self._pending
                raise
            return len(batch)

    @staticmethod
    def _append(session: Session, batch: list[tuple[bytes, str, str]]) -> None:
        log.append(
            session,
            "authorize.decisions",
            {
                "count": len(batch),
                "permits": sum(1 for _, kind, _ in batch if kind == "permit"),
                "denies": sum(1 for _, kind, _ in batch if kind == "deny"),
                "unknown_studies": sum(1 for _, kind, _ in batch if kind == "unknown"),
                "tokens_root": root_hash([h for h, _, _ in batch]).hex(),
                "pipelines": sorted({pid for _, _, pid in batch}),
            },
        )
