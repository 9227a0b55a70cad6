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
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ledger import dialect
from ledger.access import image_rows, tokens
from ledger.access.classes import ImageClass
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
UNKNOWN_STUDY = "no study with this StudyInstanceUID is known to the ledger"


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


def _verdict(classes: Sequence[ImageClass], images: int) -> Decision:
    """A study is permitted when every class of its images is; the refused classes (or,
    when none is, all of them) give the reasons and policies."""
    refused = [c for c in classes if not c.eligible]
    deciding = refused or classes
    return Decision(
        not refused,
        tuple(dict.fromkeys(r for c in deciding for r in c.reasons)),
        tuple(dict.fromkeys(p for c in deciding for p in c.policy_ids)),
        images,
    )


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
            raise NotFound(UNKNOWN_STUDY)
        classes = classes_of_rows(session, policies, purpose, rows, utcnow(), action="infer")
        return _verdict(classes, len(rows))

    def decide_many(
        self,
        sessions: Callable[[], Session],
        policies: PolicySet,
        *,
        purpose: str,
        study_uids: Sequence[str],
        commercial: bool = False,
    ) -> list[Decision | None]:
        """``decide`` for several studies, in the order given; ``None`` for a study the
        ledger does not know (the single call's 404). One mark read; on cache misses one
        read-only session, one image query per ``CHUNK`` studies and one Cedar call per
        distinct class across all of them."""
        parsed = self._purpose(purpose, commercial)
        head = self._mark()
        now = time.monotonic()
        found: dict[str, Decision | None] = {}
        missing: list[str] = []
        for uid in dict.fromkeys(study_uids):
            cached = self._cache.get((uid, purpose, commercial, policies.hash))
            if cached is not None and cached.head == head and cached.until > now:
                found[uid] = cached.decision
            else:
                missing.append(uid)
        if missing:
            with sessions() as session:
                try:
                    by_study = image_rows.of_studies(session, missing)
                    rows = [r for uid in missing for r in by_study.get(uid, ())]
                    classes = (
                        classes_of_rows(session, policies, parsed, rows, utcnow(), action="infer")
                        if rows
                        else []
                    )
                finally:
                    session.rollback()
            if len(self._cache) + len(missing) > CACHE_MAX:
                self._cache.clear()
            at = 0
            for uid in missing:
                count = len(by_study.get(uid, ()))
                if not count:
                    found[uid] = None
                    continue
                decision = _verdict(classes[at : at + count], count)
                at += count
                found[uid] = decision
                self._cache[uid, purpose, commercial, policies.hash] = _Cached(
                    decision, head, now + CACHE_SECONDS
                )
        return [found[uid] for uid in study_uids]

    def token(
        self, decision: Decision, *, pipeline_id: str, purpose: str, study_uid: str, policy: str
    ) -> str:
        """The signed decision; it names the study by hash, never by UID."""
        return self.tokens(
            [(decision, study_uid)], pipeline_id=pipeline_id, purpose=purpose, policy=policy
        )[0]

    def tokens(
        self,
        decisions: Sequence[tuple[Decision, str]],
        *,
        pipeline_id: str,
        purpose: str,
        policy: str,
    ) -> list[str]:
        """One signed decision per ``(decision, study_uid)``, queued for the decision log
        together."""
        now = utcnow()
        iat = int(now.timestamp())
        exp = int((now + timedelta(seconds=DECISION_SECONDS)).timestamp())
        signed: list[str] = []
        leaves: list[tuple[bytes, str, str]] = []
        for decision, study_uid in decisions:
            verdict = "permit" if decision.permitted else "deny"
            claims: dict[str, Any] = {
                "iss": self.issuer,
                "sub": pipeline_id,
                "aud": DECISION_AUDIENCE,
                "iat": iat,
                "nbf": iat,
                "exp": exp,
                "jti": str(uuid.uuid4()),
                "decision": verdict,
                "purpose": purpose,
                "study_sha256": hashlib.sha256(study_uid.encode()).hexdigest(),
                "policy_hash": policy,
                "policy_ids": list(decision.policy_ids),
            }
            token = tokens.sign(self.keys, DECISION_TYP, claims)
            signed.append(token)
            leaves.append((leaf_hash(token.encode()), verdict, pipeline_id))
        with self._lock:
            self._pending.extend(leaves)
        return signed

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
