"""Consent import and the set-based consent query.

Goals (docs/architecture.md §4, consent issue): 100k consents from CSV in <= 10 s on SQLite;
the set-based query that the decision path calls, for 200k subjects, reported (it is one
part of the <= 3 s / 1.5 s end-to-end access-request goal).
Usage: python bench/consent_import.py [--rows N] [--subjects N] [--pg URL]
"""

from __future__ import annotations

import argparse
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select

from ledger.clock import utcnow
from ledger.consent import csv_import, facts
from ledger.consent.in_force import effective_consents
from ledger.consent.models import Subject
from ledger.consent.purposes import Purpose
from ledger.db import make_engine, snapshot, transaction, upgrade
from tests import dbutil

IMPORT_GOAL_S = 10.0
HEADER = "issuer,patient_id,decision,purposes,modifiers,modalities,study_date_from,valid_until\n"


def make_csv(rows: int, seed: int = 1) -> str:
    """Realistic mix: mostly AI permits, some generative refusals, some scoped, some DUO."""
    rng = random.Random(seed)
    lines = [HEADER]
    for i in range(rows):
        patient = f"MRN{i:07d}"
        kind = rng.random()
        if kind < 0.55:
            line = f"urn:oid:1.2.3,{patient},permit,ai,NCU,,,"
        elif kind < 0.75:
            line = f"urn:oid:1.2.3,{patient},permit,ai.development;HMB,,CT;MR,2015-01-01,"
        elif kind < 0.85:
            line = f"urn:oid:1.2.3,{patient},deny,ai.generative,,,,"
        elif kind < 0.95:
            line = f"urn:oid:1.2.3,{patient},permit,ai.inference,,,,2031-01-01"
        else:
            line = f"urn:oid:1.2.3,{patient},deny,ai,,,,"
        lines.append(line + "\n")
    return "".join(lines)


def bench_import(backend: str, url: str, rows: int) -> None:
    text = make_csv(rows)
    engine = make_engine(url)
    key = secrets.token_bytes(32)
    t0 = time.perf_counter()
    parsed = csv_import.parse(text)
    t1 = time.perf_counter()
    with transaction(engine) as session:
        report = csv_import.import_rows(session, key, parsed, actor="bench")
    t2 = time.perf_counter()
    total = t2 - t0
    ok = "yes" if total <= IMPORT_GOAL_S or backend != "sqlite" else "NO"
    goal = f"goal <= {IMPORT_GOAL_S:.0f} s" if backend == "sqlite" else "no goal"
    print(
        f"{backend:<11} import {report.imported:,} rows: {total:.2f} s "
        f"(parse {t1 - t0:.2f} s, write {t2 - t1:.2f} s) ({goal})  {ok}"
    )
    engine.dispose()


def bench_query(backend: str, url: str, subjects: int) -> None:
    engine = make_engine(url)
    key = secrets.token_bytes(32)
    t = time.perf_counter()
    with transaction(engine) as session:
        csv_import.import_rows(
            session, key, csv_import.parse(make_csv(subjects, seed=2)), actor="bench"
        )
    print(
        f"{backend:<11} (set-up: {subjects:,} subjects imported in {time.perf_counter() - t:.1f} s)"
    )
    request = Purpose.parse("ai.training,HMB")
    with snapshot(engine) as session:
        ids = list(session.execute(select(Subject.id)).scalars())  # type: ignore[call-overload]
        for label, subject_filter in (
            ("all subjects", None),
            ("subject id list", ids),
            ("subquery", select(Subject.id)),
        ):  # type: ignore[call-overload]
            facts.permit_covers.cache_clear()
            t = time.perf_counter()
            found = effective_consents(session, utcnow(), subject_filter)
            t_query = time.perf_counter() - t
            permitted = sum(decide_all(found, request))
            total = time.perf_counter() - t
            print(
                f"{backend:<11} set-based consent facts for {len(ids):,} subjects ({label}): "
                f"query {t_query:.2f} s, query + decide {total:.2f} s ({permitted:,} permitted)"
            )
    engine.dispose()


def decide_all(found: dict[str, list[facts.ConsentFact]], request: object) -> list[bool]:
    return [facts.decide(f, request).permitted for f in found.values()]  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--subjects", type=int, default=200_000)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    targets: list[tuple[str, str, bool]] = [
        ("sqlite", dbutil.sqlite_url(tmp / "import.db"), False),
        ("sqlite", dbutil.sqlite_url(tmp / "query.db"), False),
    ]
    try:
        targets += [
            ("postgresql", dbutil.create_pg_database(args.pg, prefix="ledger_bench_imp"), True),
            ("postgresql", dbutil.create_pg_database(args.pg, prefix="ledger_bench_q"), True),
        ]
    except Exception as exc:
        print(f"postgresql: skipped ({type(exc).__name__})")
    try:
        for i, (backend, url, _) in enumerate(targets):
            upgrade(url)
            if i % 2 == 0:
                bench_import(backend, url, args.rows)
            else:
                bench_query(backend, url, args.subjects)
    finally:
        for _, url, is_pg in targets:
            if is_pg:
                dbutil.drop_pg_database(url)


if __name__ == "__main__":
    main()
