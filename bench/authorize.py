"""Inference-time authorize, in process: latency and throughput against raw Cedar.

Goal (docs/architecture.md §4): p99 <= 10 ms, and >= 50% of the throughput of raw
``cedarpy.is_authorized`` on the same requests (the Cedar call the ledger makes for each
study, with the same policy set and schema, and nothing else: no database, no consent
facts, no token).

Set-up (not timed): consents for N subjects from CSV, two images per subject in one study.
Then every study is authorized once ("cold": nothing cached, each call reads the study, its
subject's consent versions and the decision mark in one statement, and asks Cedar about
classes it has not answered) and once more ("warm": decisions cached while the decision
mark is unchanged). Each call signs a decision token, as the HTTP route does; decisions are
logged in batches of 1,000 inside the timing. Raw Cedar is timed in turns with each pass,
slice by slice, so the ratio compares the two under the same load.

Usage: python bench/authorize.py [--subjects N] [--pg URL]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cedarpy
from access_request import setup
from sqlalchemy import text

from ledger.access import decision
from ledger.access.authorize import FLUSH_AT, Authorizer
from ledger.access.image_rows import ImageRow
from ledger.clock import utcnow
from ledger.consent.in_force import effective_consents
from ledger.consent.purposes import Purpose
from ledger.db import make_engine, session_factory, snapshot, transaction
from ledger.keystore import load_keyring
from ledger.policy.engine import NAMESPACE, default_directory, load
from tests import dbutil

P99_GOAL_MS = 10.0
RATIO_GOAL = 0.5
BATCH_GOAL = 20_000
SLICE = 250  # studies per turn of raw Cedar and authorize
PURPOSE = "ai.inference"


def _cedar_requests(url: str, studies: list[str]) -> list[dict[str, object]]:
    """The Cedar request the ledger makes for each study (its first image class)."""
    engine = make_engine(url)
    purpose = Purpose.parse(PURPOSE)
    out = []
    with snapshot(engine) as session:
        rows_by_study: dict[str, list[ImageRow]] = {}
        for row in session.execute(
            text(f"SELECT study_uid, {', '.join(ImageRow._fields)} FROM images")
        ):
            rows_by_study.setdefault(row[0], []).append(ImageRow._make(row[1:]))
        in_force = effective_consents(session, utcnow())
    for study in studies:
        classifier = decision.Classifier(purpose)
        r = rows_by_study[study][0]
        classifier.classify(in_force.get(r.subject_id, []), r)
        key = classifier.keys[0]
        out.append(
            {
                "principal": {"type": f"{NAMESPACE}::Pipeline", "id": "p"},
                "action": {"type": f"{NAMESPACE}::Action", "id": "infer"},
                "resource": {"type": f"{NAMESPACE}::ImageClass", "id": "class-0"},
                "context": decision.class_context(key, decision.request_context(purpose)),
            }
        )
    engine.dispose()
    return out


def run(backend: str, url: str, subjects: int) -> None:
    home = Path(tempfile.mkdtemp())
    t = time.perf_counter()
    _, pipeline_id = setup(url, home, subjects, 2)
    engine = make_engine(url)
    with transaction(engine) as session:
        session.execute(text("UPDATE images SET study_uid = '1.2.826.0.1.' || subject_id"))
        studies = list(session.execute(text("SELECT DISTINCT study_uid FROM images")).scalars())
    print(f"{backend:<11} set-up: {subjects:,} studies in {time.perf_counter() - t:.0f} s")
    policies = load(default_directory())
    keys = load_keyring(home / "keys")
    cedar_requests = _cedar_requests(url, studies)

    authorizer = Authorizer(engine, keys, "urn:bench")
    sessions = session_factory(engine, readonly=True)  # as the route decides
    writes = session_factory(engine)
    slices = range(0, len(studies), SLICE)
    for label in ("cold", "warm"):
        # Raw Cedar and authorize take turns, a slice of studies each, so that a change in
        # the machine's load weighs on both alike: the ratio is over the same moments.
        latencies = []
        permits = 0
        raw_seconds = seconds = 0.0
        for at in slices:
            start = time.perf_counter()
            for req in cedar_requests[at : at + SLICE]:
                cedarpy.is_authorized(req, policies.cedar, [], policies.schema)
            raw_seconds += time.perf_counter() - start
            start = time.perf_counter()
            for study in studies[at : at + SLICE]:
                t0 = time.perf_counter()
                decision = authorizer.decide(sessions, policies, purpose=PURPOSE, study_uid=study)
                authorizer.token(
                    decision,
                    pipeline_id=pipeline_id,
                    purpose=PURPOSE,
                    study_uid=study,
                    policy=policies.hash,
                )
                if authorizer.decisions.pending >= FLUSH_AT:
                    authorizer.decisions.flush(writes)
                latencies.append((time.perf_counter() - t0) * 1000)
                permits += decision.permitted
            seconds += time.perf_counter() - start
        rate = len(studies) / seconds
        raw_rate = len(studies) / raw_seconds
        p99 = statistics.quantiles(latencies, n=100)[98]
        ratio = rate / raw_rate
        print(
            f"{backend:<11} authorize ({label}): {rate:,.0f}/s, p50 "
            f"{statistics.median(latencies):.2f} ms, p99 {p99:.2f} ms (goal <= {P99_GOAL_MS} ms) "
            f"{'yes' if p99 <= P99_GOAL_MS else 'NO'}; {ratio:.0%} of raw Cedar "
            f"{raw_rate:,.0f}/s (goal >= {RATIO_GOAL:.0%}) {'yes' if ratio >= RATIO_GOAL else 'NO'}"
            f"; {permits:,} permits of {len(studies):,}"
        )
        authorizer.decisions.flush(writes)
    authorizer.close()
    _batches(backend, engine, keys, policies, pipeline_id, studies)
    engine.dispose()


def _batches(
    backend: str, engine: Any, keys: Any, policies: Any, pipeline_id: str, studies: list[str]
) -> None:
    """``decide_many`` + ``tokens`` on batches of 1,000 studies (the batch route's work),
    cold (a new authorizer) then warm; signing timed apart."""
    authorizer = Authorizer(engine, keys, "urn:bench")
    sessions = session_factory(engine, readonly=True)
    writes = session_factory(engine)
    batches = [studies[i : i + 1_000] for i in range(0, len(studies), 1_000)]
    for label in ("cold", "warm"):
        deciding = signing = 0.0
        for batch in batches:
            t0 = time.perf_counter()
            decisions = authorizer.decide_many(
                sessions, policies, purpose=PURPOSE, study_uids=batch
            )
            t1 = time.perf_counter()
            authorizer.tokens(
                [(d, uid) for d, uid in zip(decisions, batch, strict=True) if d is not None],
                pipeline_id=pipeline_id,
                purpose=PURPOSE,
                policy=policies.hash,
            )
            t2 = time.perf_counter()
            deciding, signing = deciding + t1 - t0, signing + t2 - t1
            authorizer.decisions.flush(writes)
        rate = len(studies) / (deciding + signing)
        print(
            f"{backend:<11} authorize batch of 1,000 ({label}): {rate:,.0f} decisions/s "
            f"(goal >= {BATCH_GOAL:,}/s) {'yes' if rate >= BATCH_GOAL else 'NO'}"
            f"; deciding {deciding / len(studies) * 1e6:.0f} us, signing "
            f"{signing / len(studies) * 1e6:.0f} us per study"
        )
    authorizer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subjects", type=int, default=5_000)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/")
    args = parser.parse_args()
    run("sqlite", dbutil.sqlite_url(Path(tempfile.mkdtemp()) / "bench.db"), args.subjects)
    try:
        pg = dbutil.create_pg_database(args.pg, prefix="ledger_bench_authz")
    except Exception as exc:
        print(f"postgresql: skipped ({type(exc).__name__})")
        return
    try:
        run("postgresql", pg, args.subjects)
    finally:
        dbutil.drop_pg_database(pg)


if __name__ == "__main__":
    main()
