"""Inference-time authorize over HTTP: one `ledger serve` (1 worker, then 2) on loopback,
4 concurrent httpx clients, a bounded time per phase.

Phases: a bare FastAPI endpoint under uvicorn (the stack's floor), ``/healthz``, cold
authorize (each study a first time), warm authorize, batch authorize. Goals: p99 <= 25 ms
cold and warm; warm authorize >= 0.5x ``/healthz``; no call over 100 ms; batch >= 5,000
decisions/s. The machine may be shared: the load average is printed, compare ratios.

``--py-spy DIR`` samples the server during each ledger phase (``py-spy record --gil``:
where the interpreter's time goes, per thread holding it), writes the raw stacks to DIR
and prints each phase's hottest functions: how the stalls in docs/architecture.md were
found. Install py-spy first (``pip install py-spy``); it slows the server a little.

    .venv/bin/python bench/authorize_http.py [--studies 400] [--seconds 10] [--py-spy DIR]
"""

from __future__ import annotations

import argparse
import collections
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from access_request import setup
from sqlalchemy import text

from ledger.db import make_engine, transaction
from ledger.principals import service as principals
from ledger.principals.models import PrincipalKind, Role
from ledger.principals.schemas import PrincipalCreate
from tests import dbutil
from tests.servers import free_port

CLIENTS = 4
PURPOSE = "ai.inference"
FLOOR_APP = """
import sys, uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.get("/")
def constant() -> dict[str, str]:
    return {"status": "ok"}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def _wait(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "server exited"
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("server not ready")


def _phase(
    name: str,
    base: str,
    seconds: float,
    call: Callable[[httpx.Client], int],
) -> dict[str, float]:
    """``call`` makes one request and returns how many decisions it carried."""
    latencies: list[float] = []
    counted = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            mine: list[float] = []
            done = 0
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    n = call(http)
                except StopIteration:
                    break
                mine.append((time.perf_counter() - t0) * 1000)
                done += n
            with lock:
                latencies.extend(mine)
                counted[0] += done

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    latencies.sort()
    row = {
        "rate": len(latencies) / elapsed,
        "decisions": counted[0] / elapsed,
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "max": latencies[-1],
        "n": len(latencies),
    }
    print(
        f"  {name:<22} {row['rate']:>8,.0f}/s  p50 {row['p50']:>6.1f} ms  p99 "
        f"{row['p99']:>6.1f} ms  max {row['max']:>6.1f} ms  ({row['n']:,} calls"
        + (f", {row['decisions']:,.0f} decisions/s)" if counted[0] != len(latencies) else ")"),
        flush=True,
    )
    return row


class Profiler:
    """py-spy attached to the server for one phase at a time."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.tool = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            assert Path(self.tool).exists(), "install py-spy for --py-spy"

    def record(self, pid: int, name: str, seconds: float) -> Callable[[], None]:
        """Start sampling ``pid`` (and its worker processes); the returned call waits for
        the recording and prints its summary."""
        if self.directory is None:
            return lambda: None
        out = self.directory / f"{name}.txt"
        process = subprocess.Popen(
            [self.tool, "record", "--pid", str(pid), "--subprocesses", "--gil",
             "--nonblocking", "--rate", "200", "--format", "raw",
             "--duration", str(max(1, round(seconds))), "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

        def done() -> None:
            process.wait()
            _summary(out)

        return done


def _summary(path: Path, top: int = 12) -> None:
    """The functions most often on the stack (inclusive) among the decision path's (the
    ledger's below the HTTP edge, the database session, Cedar, signing, thread hand-offs),
    and the lines most often at its top (self)."""
    if not path.exists():
        print(f"    (no profile written to {path})")
        return
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")[1:]
        total += int(count)
        for name in {f.rpartition(":")[0] for f in frames}:
            inclusive[name] += int(count)
        if frames:
            own[frames[-1]] += int(count)
    if not total:
        return
    watched = (
        "ledger/access",
        "ledger/consent",
        "ledger/principals",
        "ledger/provenance",
        "ledger/http/security",
        "ledger/http/routers",
        "sqlalchemy/orm/session.py",
        "cedarpy",
        "threading.py",
        "to_thread.py",
    )
    print(f"    profile {path.name}: {total:,} samples holding the GIL")
    hot = [(n, c) for n, c in inclusive.most_common() if any(w in n for w in watched)]
    for name, count in hot[:top]:
        print(f"      {count / total:6.1%}  {name})")
    for name, count in own.most_common(top // 2):
        print(f"      {count / total:6.1%}  self {name}")


def _serve(home: Path, url: str, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "LEDGER_HOME": str(home),
        "LEDGER_DATABASE_URL": url,
        "LEDGER_HASH_WORKER": "false",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "ledger", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    _wait(f"{base}/healthz", process)
    return process, base


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


# The table issue 22 was filed with (same machine, 400 studies, 4 clients), for comparison.
BEFORE = """before (as filed in issue 22, 1 worker):
  /healthz                  300-343/s                p99     34 ms
  authorize cold             83-97/s                 p99    343-345 ms
  authorize warm            114-144/s  p50  13-17 ms  p99    261-346 ms
  single calls of 0.45-1.97 s under load; authorize at 0.16x the bare FastAPI floor
after (this run):"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--py-spy", type=Path, default=None, help="profile into this directory")
    args = parser.parse_args()
    seconds = args.seconds
    profiler = Profiler(args.py_spy)
    print(f"load average at start: {os.getloadavg()}")
    print(BEFORE)

    port = free_port()
    floor = subprocess.Popen([sys.executable, "-c", FLOOR_APP, str(port)])
    try:
        _wait(f"http://127.0.0.1:{port}/", floor)
        print("bare FastAPI + uvicorn (1 worker)")
        base_row = _phase("constant", f"http://127.0.0.1:{port}", seconds, lambda h: _get(h, "/"))
    finally:
        _stop(floor)

    for workers in (1, 2):
        home = Path(tempfile.mkdtemp(prefix="ledger-bench-http-"))
        url = dbutil.sqlite_url(home / "ledger.db")
        setup(url, home, args.studies, 2)
        engine = make_engine(url)
        with transaction(engine) as session:
            session.execute(text("UPDATE images SET study_uid = '1.2.826.0.1.' || subject_id"))
            studies = list(session.execute(text("SELECT DISTINCT study_uid FROM images")).scalars())
            key = principals.create(
                session,
                PrincipalCreate(name="bench", kind=PrincipalKind.pipeline, roles=[Role.pipeline]),
                actor=None,
            ).api_key
        engine.dispose()
        headers = {"Authorization": f"Bearer {key}"}
        process, base = _serve(home, url, workers)
        try:
            print(f"ledger serve --workers {workers} (SQLite, {len(studies)} studies)")

            def measure(
                name: str,
                call: Callable[[httpx.Client], int],
                pid: int = process.pid,
                workers: int = workers,
                base: str = base,
            ) -> dict[str, float]:
                finish = profiler.record(
                    pid, f"w{workers}-{name.strip('/').replace(' ', '-')}", seconds
                )
                row = _phase(name, base, seconds, call)
                finish()
                return row

            health = measure("/healthz", lambda h: _get(h, "/healthz"))
            cold_iter = iter(studies)
            cold_lock = threading.Lock()
            reached: list[str] = []

            def cold(
                h: httpx.Client,
                cold_lock: threading.Lock = cold_lock,
                cold_iter: Iterator[str] = cold_iter,
                headers: dict[str, str] = headers,
                reached: list[str] = reached,
            ) -> int:
                with cold_lock:
                    study = next(cold_iter)
                    reached.append(study)
                return _authorize(h, headers, study)

            cold_row = measure("authorize cold", cold)
            warm_iter = itertools.cycle(reached)  # the studies the cold phase asked about

            def warm(
                h: httpx.Client,
                warm_iter: Iterator[str] = warm_iter,
                headers: dict[str, str] = headers,
            ) -> int:
                return _authorize(h, headers, next(warm_iter))

            warm_row = measure("authorize warm", warm)

            def batch(
                h: httpx.Client, headers: dict[str, str] = headers, studies: list[str] = studies
            ) -> int:
                r = h.post(
                    "/v1/authorize/batch",
                    headers=headers,
                    json={"purpose": PURPOSE, "study_instance_uids": studies[:1_000]},
                )
                assert r.status_code == 200, r.text
                return len(r.json()["decisions"])

            batch_row = measure(f"batch of {min(len(studies), 1_000)}", batch)
            _goals(base_row, health, cold_row, warm_row, batch_row)
        finally:
            _stop(process)
            shutil.rmtree(home, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()}")


def _get(h: httpx.Client, path: str) -> int:
    assert h.get(path).status_code == 200
    return 1


def _authorize(h: httpx.Client, headers: dict[str, str], study: str) -> int:
    r = h.post(
        "/v1/authorize",
        headers=headers,
        json={"purpose": PURPOSE, "study_instance_uid": study},
    )
    assert r.status_code == 200, r.text
    return 1


def _goals(
    floor: dict[str, float],
    health: dict[str, float],
    cold: dict[str, float],
    warm: dict[str, float],
    batch: dict[str, float],
) -> None:
    def ok(good: bool) -> str:
        return "yes" if good else "NO"

    worst = max(cold["max"], warm["max"])
    ratio = warm["rate"] / health["rate"]
    print(
        f"  goals: p99 <= 25 ms cold {ok(cold['p99'] <= 25)}, warm {ok(warm['p99'] <= 25)}; "
        f"warm/healthz {ratio:.2f} (>= 0.5) {ok(ratio >= 0.5)}; no authorize call over "
        f"100 ms {ok(worst <= 100)} (max {worst:.0f} ms); batch "
        f"{batch['decisions']:,.0f} decisions/s (>= 5,000) {ok(batch['decisions'] >= 5_000)}; "
        f"healthz/floor {health['rate'] / floor['rate']:.2f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
