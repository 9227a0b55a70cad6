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

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ledger import dialect
from ledger.access import conditions, image_rows, study_read
from ledger.access.asker import NOBODY, Asker
from ledger.access.classes import ImageClass
from ledger.access.decision import Classifier, Verdicts
from ledger.access.decision_log import DecisionLog
from ledger.access.decision_tokens import Decision, DecisionSigner
from ledger.access.own_connection import OwnConnection
from ledger.clock import utcnow
from ledger.consent.purposes import Purpose
from ledger.errors import NotFound
from ledger.keystore import KeyRing
from ledger.policy.engine import PolicySet
from ledger.principals.keys import Caller, KeyCache, resolve_key
from ledger.provenance import log

CACHE_SECONDS = 60.0
CACHE_MAX = 100_000
FLUSH_AT = 1_000  # pending decisions that start a flush (in the background over HTTP)
FLUSH_WAIT_AT = 10 * FLUSH_AT  # ... and that make a call wait for one
UNKNOWN_STUDY = "no study with this StudyInstanceUID is known to the ledger"


@dataclass(frozen=True)
class _Cached:
    decision: Decision
    head: int
    until: float

    def valid(self, head: int | None, now: float) -> bool:
        """Taken at decision mark ``head`` and not expired at ``now``."""
        return self.head == head and self.until > now


def _verdict(classes: Sequence[ImageClass], images: int) -> Decision:
    """A study is permitted when every class of its images is; the refused classes (or,
    when none is, all of them) give the reasons and policies. A study's images mostly
    share one class object (classes are remembered per key), weighed once."""
    classes = list({id(c): c for c in classes}.values())
    refused = [c for c in classes if not c.eligible]
    deciding = refused or classes
    return Decision(
        not refused,
        tuple(dict.fromkeys(r for c in deciding for r in c.reasons)),
        tuple(dict.fromkeys(p for c in deciding for p in c.policy_ids)),
        images,
    )


class Marks(NamedTuple):
    """The log's marks an authorize call compares its caches with."""

    decisions: int  # moves with every change that can alter a decision
    credentials: int  # moves with every change to a key or a principal


class Authorizer:
    """One per process: holds the decision cache, Cedar's verdict per class, the key cache
    and the batch of decisions to log."""

    def __init__(self, engine: Engine, keys: KeyRing, issuer: str) -> None:
        self.engine = engine
        self.keys = keys
        self.issuer = issuer
        self.callers = KeyCache()
        # Marks are read on the event loop (``authenticate``), cache misses in threads:
        # each on a connection of its own, so a long batch read never holds up a mark read.
        self._marker = OwnConnection(engine)
        self._reader = OwnConnection(engine)
        self._marks_sql = dialect.driver_sql(engine, log.MARKS_SELECT)
        self._cache: dict[tuple[Any, ...], _Cached] = {}
        self._purposes: dict[tuple[str, bool, Asker], Purpose] = {}
        # Cedar's answer per (policy set, request, class): a function of those alone (no
        # entities, no time), so it never goes stale; a new policy set has a new hash.
        self._verdicts = Verdicts(CACHE_MAX)
        self._terms = study_read.Terms()
        # An image's class by (policy set, request), then by its subject's terms numbers
        # and the image attributes weighed: numbers are never reused, so it never goes
        # stale either (the request is hashed once a call, not once an image).
        self._seen: dict[tuple[str, Purpose], dict[tuple[Any, ...], ImageClass]] = {}
        self.signer = DecisionSigner(keys, issuer)
        self.decisions = DecisionLog()  # decisions signed, waiting to be logged

    # -- the decision ---------------------------------------------------------------------
    def _purpose(self, text: str, commercial: bool, asker: Asker) -> Purpose:
        """Parsed once per distinct text and asker: pipelines send the same few on every
        call. The parsed purpose carries the asker, so the caches below are per asker."""
        key = (text, commercial, asker)
        parsed = self._purposes.get(key)
        if parsed is None:
            # InvalidInput if unknown
            parsed = conditions.with_conditions(
                Purpose.parse(
                    text, commercial=commercial, organisation_type=asker.organisation_type
                ),
                {"clinical_care": True} if asker.clinical_care else {},
                region=asker.region,
                requester=asker.pipeline_id,
                institution=asker.institution,
            )
            if len(self._purposes) < 1_000:
                self._purposes[key] = parsed
        return parsed

    def marks(self) -> Marks:
        """The log's marks, read on a connection of our own in autocommit mode: one round
        trip, no transaction, no pool checkout (this runs on every call)."""
        with self._marker.lock:
            found = dict(
                self._marker.rows(self._marks_sql, (log.DECISION_MARK, log.CREDENTIAL_MARK))
            )
        return Marks(int(found.get(log.DECISION_MARK, -1)), int(found.get(log.CREDENTIAL_MARK, -1)))

    def authenticate(self, sessions: Callable[[], Session], key: str) -> Caller:
        """The caller of an API key: from the key cache while the credentials mark is
        unchanged, else verified in a read-only session (and remembered). The caller
        carries the decision mark read with it, which ``decide`` then uses: one mark read
        per call."""
        marks = self.marks()
        caller = self.callers.get(key, marks.credentials)
        if caller is None:
            with sessions() as session:
                try:
                    caller = resolve_key(session, key)
                finally:
                    session.rollback()
            self.callers.put(key, caller, marks.credentials)
        return replace(caller, decision_mark=marks.decisions)

    def close(self) -> None:
        self._marker.close()
        self._reader.close()

    def cached(
        self,
        policies: PolicySet,
        *,
        purpose: str,
        study_uid: str,
        commercial: bool = False,
        asker: Asker = NOBODY,
        head: int,
    ) -> Decision | None:
        """``decide``'s answer when it is in the cache and still valid at decision mark
        ``head``, else None. No I/O: the route answers a hit without a thread hand-off."""
        parsed = self._purpose(purpose, commercial, asker)
        hit = self._cache.get((study_uid, parsed, policies.hash))
        if hit is not None and hit.valid(head, time.monotonic()):
            return hit.decision
        return None

    def decide(
        self,
        sessions: Callable[[], Session],
        policies: PolicySet,
        *,
        purpose: str,
        study_uid: str,
        commercial: bool = False,
        asker: Asker = NOBODY,
        head: int | None = None,
    ) -> Decision:
        """``sessions`` makes read-only sessions; one is opened only on a cache miss.
        ``asker`` is the calling pipeline and what it states; ``head``
        the decision mark when the caller has just read it (``authenticate``)."""
        parsed = self._purpose(purpose, commercial, asker)
        key = (study_uid, parsed, policies.hash)
        cached = self._cache.get(key)
        now = time.monotonic()
        if head is None and cached is None:
            # Nothing cached to weigh the mark against: it is read with the study, in the
            # same snapshot (a cold call is one round trip).
            decision, head = self._compute(sessions, policies, parsed, study_uid, mark=True)
        else:
            if head is None:
                head = self.marks().decisions
            if cached is not None and cached.valid(head, now):
                return cached.decision
            decision, _ = self._compute(sessions, policies, parsed, study_uid)
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[key] = _Cached(decision, head, now + CACHE_SECONDS)
        return decision

    def _compute(
        self,
        sessions: Callable[[], Session],
        policies: PolicySet,
        purpose: Purpose,
        study_uid: str,
        *,
        mark: bool = False,
    ) -> tuple[Decision, int]:
        """The decision, and the decision mark read with the study when ``mark``."""
        as_of = utcnow()
        read = self._read(sessions, [study_uid], as_of, mark=mark)
        rows = read.images.get(study_uid)
        if not rows:
            raise NotFound(UNKNOWN_STUDY)
        classes = self._classes(sessions, policies, purpose, rows, read, as_of)
        return _verdict(classes, len(rows)), read.mark

    def _read(
        self,
        sessions: Callable[[], Session],
        studies: Sequence[str],
        as_of: datetime,
        *,
        mark: bool = False,
    ) -> study_read.Read:
        """The studies' images and their subjects' consent versions (and with ``mark``
        the decision mark, read with the first chunk), one statement per
        ``study_read.CHUNK`` studies: on our own connection when no other thread is using
        it, else in a read-only session of the pool (concurrent misses do not queue)."""
        raw: list[Any] = []
        for i in range(0, len(studies), study_read.CHUNK):
            sql, params = study_read.statement(
                self.engine,
                studies[i : i + study_read.CHUNK],
                as_of,
                mark=log.DECISION_MARK if mark and i == 0 else None,
            )
            if self._reader.lock.acquire(blocking=False):
                try:
                    raw.extend(self._reader.rows(sql, params))
                finally:
                    self._reader.lock.release()
                continue
            with sessions() as session:
                try:
                    raw.extend(image_rows.fetch(session, sql, params))
                finally:
                    session.rollback()
        return study_read.parse(raw)

    def _classes(
        self,
        sessions: Callable[[], Session],
        policies: PolicySet,
        purpose: Purpose,
        rows: Sequence[image_rows.ImageRow],
        read: study_read.Read,
        as_of: datetime,
    ) -> list[ImageClass]:
        """``decision.classes_of_rows`` with action ``infer``: an image's class is a
        function of its subject's consent terms (their numbers), the image attributes the
        consents and Cedar look at, the request and the policy set, so it is remembered
        by those; the rows not seen yet are classified (``Classifier``) and Cedar is asked
        only about classes it has not answered."""
        entries = self._terms.of(read.versions, sessions)
        in_force = study_read.facts(read.versions, as_of, entries)
        seen = self._seen.get((policies.hash, purpose))
        if seen is None:
            if len(self._seen) >= 100:
                self._seen.clear()
            seen = self._seen[policies.hash, purpose] = {}
        by_subject: dict[str, tuple[tuple[int, ...], bool]] = {}
        found: list[ImageClass | None] = []
        keys: list[tuple[Any, ...]] = []
        for r in rows:
            held = by_subject.get(r.subject_id)
            if held is None:
                items = in_force.get(r.subject_id, ())
                held = by_subject[r.subject_id] = (
                    tuple(sorted(f.terms for f in items)),
                    any(f.scope.date_from or f.scope.date_to for f in items),
                )
            key = (
                held[0],
                r.modality,
                r.body_part,
                r.study_date if held[1] else None,
                r.burned_in,
                r.erased_at is None,
            )
            keys.append(key)
            found.append(seen.get(key))
        todo = [n for n, c in enumerate(found) if c is None]
        if todo:
            classifier = Classifier(purpose)
            positions = [
                classifier.classify(in_force.get(rows[n].subject_id, []), rows[n]) for n in todo
            ]
            classes = self._verdicts.decide(policies, purpose, classifier.keys, "infer")
            if len(seen) + len(todo) > CACHE_MAX:
                seen.clear()
            for n, p in zip(todo, positions, strict=True):
                found[n] = seen[keys[n]] = classes[p]
        return cast(list[ImageClass], found)

    def decide_many(
        self,
        sessions: Callable[[], Session],
        policies: PolicySet,
        *,
        purpose: str,
        study_uids: Sequence[str],
        commercial: bool = False,
        asker: Asker = NOBODY,
        head: int | None = None,
    ) -> list[Decision | None]:
        """``decide`` for several studies, in the order given; ``None`` for a study the
        ledger does not know (the single call's 404). One mark read; on cache misses one
        statement per ``study_read.CHUNK`` studies and one Cedar call per class not
        answered before."""
        parsed = self._purpose(purpose, commercial, asker)
        if head is None and any((uid, parsed, policies.hash) in self._cache for uid in study_uids):
            head = self.marks().decisions
        # else nothing cached to weigh the mark against: it is read with the studies
        now = time.monotonic()
        found: dict[str, Decision | None] = {}
        missing: list[str] = []
        for uid in dict.fromkeys(study_uids):
            cached = self._cache.get((uid, parsed, policies.hash))
            if cached is not None and cached.valid(head, now):
                found[uid] = cached.decision
            else:
                missing.append(uid)
        if missing:
            as_of = utcnow()
            read = self._read(sessions, missing, as_of, mark=head is None)
            if head is None:
                head = read.mark
            by_study = read.images
            rows = [r for uid in missing for r in by_study.get(uid, ())]
            classes = self._classes(sessions, policies, parsed, rows, read, as_of) if rows else []
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
                self._cache[uid, parsed, policies.hash] = _Cached(
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
        signed, leaves = self.signer.sign(
            decisions, pipeline_id=pipeline_id, purpose=purpose, policy=policy
        )
        self.decisions.add(leaves)
        return signed
