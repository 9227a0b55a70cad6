"""DICOMweb: what a pipeline gets through the ledger's WADO-RS under a grant, against the
same originals straight from Orthanc's WADO-RS, in one run; and ``images sync`` from
Orthanc into the ledger against Orthanc's own WADO-RS export rate.

Goals: ledger WADO-RS (decrypt + de-identify + stream, every release check, one log entry
per call) >= 0.5x Orthanc's WADO-RS of the originals, in instances/s and MB/s. The sync
figure (QIDO, then one WADO-RS call per instance, then validate + encrypt + index + log
each in its own transaction) is printed beside Orthanc's study-level export rate, for
reading rather than as a goal.

Both servers run as processes on loopback (``ledger serve`` on SQLite; Debian's Orthanc
with its DICOMweb plugin, which needs ``apt-get install orthanc orthanc-dicomweb``); one
client fetches study by study, reading each multipart answer to the end. Each side is
fetched ``--runs`` times, alternating, and the median counts. Beside the throughput, each
server's CPU time per instance (from /proc, children included) is printed: on a shared
machine the wall-clock ratio moves with the load, the CPU cost much less.

Like with like: ``--concurrency N`` fetches N studies at a time from *both* servers (a
pipeline with a thread pool, as dicomweb-client users run one); ``--workers W`` serves the
ledger as ``ledger serve --workers W`` does (Orthanc serves with its own thread pool).
The defaults (1 and 1) are one client against one ledger process.
Usage: python bench/dicomweb.py [--studies 12] [--per-study 10] [--size 512] [--runs 3]
       [--workers 1] [--concurrency 1] [--py-spy FILE]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from ledger.client import LedgerClient
from ledger.config import Settings
from ledger.consent import csv_import
from ledger.db import make_engine, transaction, upgrade
from ledger.images import datasets, dicomweb_sync, multipart, synthetic
from ledger.images.store import FilesystemStore
from ledger.keystore import create_keys, load_keyring
from ledger.principals import service as principals
from ledger.principals.models import PrincipalKind, Role
from ledger.principals.schemas import PrincipalCreate
from tests.orthanc import Orthanc
from tests.servers import Server

GOAL = 0.5
ORTHANC = "/usr/sbin/Orthanc"
ISSUER = "urn:bench:hospital"
ACCEPT = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}


def _files(studies: int, per_study: int, size: int) -> list[bytes]:
    rng = random.Random(7)
    out = []
    for s in range(studies):
        for n in range(per_study):
            out.append(
                synthetic.instance(
                    patient_id=f"B{s:04d}",
                    issuer=ISSUER,
                    modality="CT",
                    body_part="CHEST",
                    study_date=date(2024, 1, 1 + s % 28),
                    study_uid=f"1.2.826.0.77.{s}",
                    series_uid=f"1.2.826.0.77.{s}.1",
                    number=n + 1,
                    rng=rng,
                    size=size,
                )
            )
    return out


def _principal(settings: Settings, role: Role, name: str) -> str:
    engine = make_engine(settings.resolved_database_url)
    kind = PrincipalKind.pipeline if role == Role.pipeline else PrincipalKind.person
    with transaction(engine) as session:
        key = principals.create(
            session, PrincipalCreate(name=name, kind=kind, roles=[role]), actor=None
        ).api_key
    engine.dispose()
    return key


def _fetch_all(
    http: httpx.Client,
    base: str,
    studies: list[str],
    headers: dict[str, str],
    concurrency: int = 1,
) -> tuple[int, int, float]:
    """Instances, bytes and seconds to retrieve every study (study-level WADO-RS),
    ``concurrency`` studies at a time."""

    def one(study: str) -> tuple[int, int]:
        r = http.get(f"{base}/studies/{study}", headers={**headers, **ACCEPT})
        r.raise_for_status()
        parts = multipart.split(r.content, multipart.boundary_of(r.headers["content-type"]))
        return len(parts), sum(len(p.data) for p in parts)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        done = list(pool.map(one, studies))
    return sum(n for n, _ in done), sum(b for _, b in done), time.perf_counter() - started


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time (user, system) of a process and its children so far, from /proc: what a
    server spent, whatever else the machine is running. System time is mostly the
    loopback sends, which both servers pay alike."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if entry.name == str(pid) or fields[1] == str(pid):
            user += int(fields[11]) / tick
            system += int(fields[12]) / tick
    return user, system


def _spent(pid: int, before: tuple[float, float]) -> tuple[float, float]:
    now = _cpu_seconds(pid)
    return now[0] - before[0], now[1] - before[1]


class _Served(Server):
    """``ledger serve --workers N`` (``tests.servers.Server`` serves with one)."""

    def __init__(self, home: Path, url: str, log: Path, workers: int) -> None:
        super().__init__(home, url, log)
        self.options = ["--workers", str(workers)]

    def start(self) -> _Served:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ledger", "serve", "--port", str(self.port), *self.options],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self


def _spy(pid: int, out: Path | None) -> subprocess.Popen[bytes] | None:
    """py-spy sampling ``pid`` in raw collapsed stacks, paused until the ledger's first run;
    None without ``--py-spy``. Only the thread holding the GIL is sampled (what Python
    spends, not threads waiting), and the server is not paused to take a sample."""
    if out is None:
        return None
    tool = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    sampling = ["--rate", "500", "--gil", "--nonblocking", "--format", "raw"]
    spy = subprocess.Popen(
        [tool, "record", "--pid", str(pid), *sampling, "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached
    os.kill(spy.pid, signal.SIGSTOP)
    return spy


def _study_uids(http: httpx.Client, base: str, headers: dict[str, str]) -> list[str]:
    r = http.get(f"{base}/studies", headers={**headers, "Accept": "application/dicom+json"})
    r.raise_for_status()
    return [item["0020000D"]["Value"][0] for item in r.json()]


def _line(label: str, n: int, size: int, seconds: float, extra: str = "") -> None:
    print(
        f"{label:34s}{n / seconds:8.1f} instances/s {size / seconds / 1e6:8.1f} MB/s"
        f"  ({n} in {seconds:.2f} s){extra}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=12)
    parser.add_argument("--per-study", type=int, default=10)
    parser.add_argument("--size", type=int, default=512, help="pixels square (16-bit)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="ledger serve --workers")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="studies fetched at a time, both sides"
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        help="sample the ledger server with py-spy during its runs (raw stacks to this file)",
    )
    args = parser.parse_args()
    if not Path(ORTHANC).exists():
        print(f"dicomweb: skipped, no {ORTHANC} (apt-get install orthanc orthanc-dicomweb)")
        return
    root = Path(tempfile.mkdtemp(prefix="bench-dicomweb-"))
    home = root / "home"
    create_keys(home / "keys")
    url = f"sqlite:///{root / 'ledger.db'}"
    upgrade(url)
    settings = Settings(home=home, database_url=url, checkpoint_interval=0, hash_worker=False)
    files = _files(args.studies, args.per_study, args.size)
    total_mb = sum(map(len, files)) / 1e6
    print(
        f"{len(files)} CT instances ({args.studies} studies, {args.size}x{args.size}, "
        f"{total_mb:.1f} MB); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
        f"ledger serve --workers {args.workers}, {args.concurrency} studies at a time"
    )

    pacs = Orthanc(root / "orthanc").start()
    server: Server | None = None
    try:
        pacs.upload(files)
        with httpx.Client(auth=pacs.auth, timeout=300) as http:
            pacs_studies = _study_uids(http, pacs.dicomweb, {})
            _, _, export = _fetch_all(http, pacs.dicomweb, pacs_studies, {})  # warm
            n_export, b_export, export = _fetch_all(http, pacs.dicomweb, pacs_studies, {})

        # Sync Orthanc -> ledger, in process (as `ledger images sync` runs it).
        engine = make_engine(url)
        keys = load_keyring(settings.keys_dir)
        source = dicomweb_sync.Source(pacs.dicomweb, user=pacs.auth[0], password=pacs.auth[1])
        state = dicomweb_sync.State(dicomweb_sync.state_path(home, source), source.url)
        started = time.perf_counter()
        report = dicomweb_sync.sync(
            source,
            state=state,
            transaction=lambda: transaction(engine),
            store=FilesystemStore(settings.objects_dir),
            keys=keys,
            default_issuer=ISSUER,
            actor="bench",
        )
        synced = time.perf_counter() - started
        assert report.stored == len(files), report.as_json()

        # Consents, a dataset, a request, an approval: a grant over every instance.
        rows = "".join(f"{ISSUER},B{s:04d},permit,ai,\n" for s in range(args.studies))
        with transaction(engine) as session:
            csv_import.import_rows(
                session,
                keys.pseudonym_key,
                csv_import.parse("issuer,patient_id,decision,purposes,modifiers\n" + rows),
                actor="bench",
            )
            dataset = datasets.create(
                session,
                datasets.DatasetCreate(
                    name="bench", filter=datasets.DatasetFilter(modalities=["CT"])
                ),
                actor="bench",
            ).id
        engine.dispose()
        pipeline_key = _principal(settings, Role.pipeline, "bench-pipeline")
        steward_key = _principal(settings, Role.steward, "bench-steward")
        server = _Served(home, url, root / "server.log", args.workers)
        server.start().wait_ready()
        pipeline = LedgerClient(server.url, pipeline_key)
        request = pipeline.request_access(
            dataset, "ai.training", "Benchmark the DICOMweb release path of the ledger."
        )
        approved = httpx.post(
            f"{server.url}/v1/access-requests/{request['id']}/approve",
            headers={"Authorization": f"Bearer {steward_key}"},
            json={"comment": "bench"},
            timeout=60,
        )
        approved.raise_for_status()
        grant = pipeline.wait_for_grant(request["id"], poll=0.2)
        headers = {"Authorization": f"Bearer {pipeline_key}", "Ledger-Grant": grant.token}
        base = f"{server.url}/v1/grants/{grant.id}/dicomweb"

        ledger_runs, pacs_runs = [], []
        ledger_cpu: list[tuple[float, float]] = []
        pacs_cpu: list[tuple[float, float]] = []
        with (
            httpx.Client(timeout=300) as http,
            httpx.Client(auth=pacs.auth, timeout=300) as direct,
        ):
            studies = _study_uids(http, base, headers)
            assert len(studies) == args.studies, studies
            c = args.concurrency
            _fetch_all(http, base, studies[: max(c, 1)], headers, c)  # warm
            assert server.process is not None
            assert pacs.process is not None
            ledger_pid, pacs_pid = server.process.pid, pacs.process.pid
            spy = _spy(ledger_pid, args.py_spy)
            for _ in range(args.runs):
                if spy is not None:
                    os.kill(spy.pid, signal.SIGCONT)
                before = _cpu_seconds(ledger_pid)
                ledger_runs.append(_fetch_all(http, base, studies, headers, c))
                ledger_cpu.append(_spent(ledger_pid, before))
                if spy is not None:
                    os.kill(spy.pid, signal.SIGSTOP)  # Orthanc's turn: not sampled
                before = _cpu_seconds(pacs_pid)
                pacs_runs.append(_fetch_all(direct, pacs.dicomweb, pacs_studies, {}, c))
                pacs_cpu.append(_spent(pacs_pid, before))
            if spy is not None:
                os.kill(spy.pid, signal.SIGCONT)
                spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled
                spy.wait()
    finally:
        if server is not None:
            server.stop()
        pacs.stop()

    def median(runs: list[tuple[int, int, float]]) -> tuple[int, int, float]:
        seconds = statistics.median(r[2] for r in runs)
        return runs[0][0], runs[0][1], seconds

    n_l, b_l, s_l = median(ledger_runs)
    n_o, b_o, s_o = median(pacs_runs)
    assert n_l == n_o == len(files), (n_l, n_o)
    print()
    _line("Orthanc WADO-RS (originals):", n_o, b_o, s_o)
    _line("ledger WADO-RS under a grant:", n_l, b_l, s_l)
    ratio = s_o / s_l
    ratio_mb = (b_l / s_l) / (b_o / s_o)
    verdict = "yes" if ratio >= GOAL else "NO"
    print(
        f"{'ledger / Orthanc:':34s}{ratio:8.2f}x instances/s, {ratio_mb:.2f}x MB/s "
        f"(goal >= {GOAL})  {verdict}"
    )

    def per_instance(spent: list[tuple[float, float]], n: int) -> str:
        user, system = (statistics.median(s[i] for s in spent) / n * 1e3 for i in (0, 1))
        return f"{user + system:.2f} ms ({user:.2f} user, {system:.2f} system)"

    print(
        f"{'server CPU per instance:':34s}Orthanc {per_instance(pacs_cpu, n_o)}, ledger "
        f"{per_instance(ledger_cpu, n_l)} (for reading: what the load average cannot blur)"
    )
    print()
    _line("Orthanc WADO-RS export:", n_export, b_export, export)
    _line("ledger images sync from Orthanc:", report.stored, report.bytes, synced)
    print(f"{'sync / Orthanc export:':34s}{export / synced:8.2f}x (for reading; no goal)")


if __name__ == "__main__":
    main()
