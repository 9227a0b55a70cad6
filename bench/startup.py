"""Start-up: how long ``ledger --help`` and ``import ledger.client`` take, as whole processes.

Goal (docs/architecture.md §4): ``ledger --help`` <= 3x ``python -c "import typer,
httpx"``, the least any typer command that talks HTTP can cost. Every figure is a fresh
process, interpreter start included, run round-robin so that load from elsewhere on the
machine falls on all of them alike; one unmeasured run each first warms the bytecode cache.
``--root DIR`` times another checkout (e.g. one from before a change) through PYTHONPATH
and ``python -m ledger``. Usage: python bench/startup.py [--runs N] [--root DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL_RATIO = 3.0


def commands(root: Path | None) -> dict[str, list[str]]:
    python = sys.executable
    script = Path(python).with_name("ledger")
    ledger = [str(script)] if root is None and script.exists() else [python, "-m", "ledger"]
    return {
        "ledger --help": [*ledger, "--help"],
        "ledger deid --help": [*ledger, "deid", "--help"],
        "import ledger.client": [python, "-c", "import ledger.client"],
        "import httpx": [python, "-c", "import httpx"],
        "import typer, httpx": [python, "-c", "import typer, httpx"],
    }


def once(argv: list[str], env: dict[str, str], cwd: Path | None) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode().strip()[-300:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--root", type=Path, help="checkout to time instead of this one")
    args = parser.parse_args()
    env = dict(os.environ)
    cwd = None
    if args.root is not None:  # run in it too: ``-c`` and ``-m`` put the working dir first
        cwd = args.root.resolve()
        env["PYTHONPATH"] = str(cwd)
    todo = commands(args.root)
    times: dict[str, list[float]] = {name: [] for name in todo}
    for argv in todo.values():
        once(argv, env, cwd)
    for _ in range(args.runs):
        for name, argv in todo.items():
            times[name].append(once(argv, env, cwd))

    where = f" of {args.root}" if args.root is not None else ""
    print(f"start-up{where}, {args.runs} runs each, process start included (ms)")
    print(f"{'':22} {'median':>7} {'min':>7} {'max':>7}")
    for name, values in times.items():
        ms = [v * 1000 for v in values]
        print(f"{name:22} {statistics.median(ms):7.0f} {min(ms):7.0f} {max(ms):7.0f}")
    median = {name: statistics.median(values) for name, values in times.items()}
    ratio = median["ledger --help"] / median["import typer, httpx"]
    ok = "yes" if ratio <= GOAL_RATIO else "NO"
    goal = f"(goal <= {GOAL_RATIO:.0f}x)"
    print(f"ledger --help:         {ratio:7.2f}x import typer, httpx {goal}  {ok}")
    deid = median["ledger deid --help"] / median["import typer, httpx"]
    print(f"ledger deid --help:    {deid:7.2f}x import typer, httpx")
    sdk = median["import ledger.client"] / median["import httpx"]
    print(f"import ledger.client:  {sdk:7.2f}x import httpx")


if __name__ == "__main__":
    main()
