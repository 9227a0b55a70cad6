"""``ledger serve`` fixes glibc's allocator thresholds (``ledger.allocator``) for itself
and the workers it starts, unless the operator chose them; each check runs in a fresh
interpreter, since tuning is for the life of a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ledger import allocator

SCRIPT = (
    "import json, os; from ledger import allocator; done = allocator.tune(); "
    "print(json.dumps([done, {k: os.environ.get(k) for k in allocator.ENV}]))"
)


def _tune(**env: str) -> tuple[bool, dict[str, str | None]]:
    clean = {k: v for k, v in os.environ.items() if k not in allocator.ENV}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    tuned, seen = json.loads(done.stdout.splitlines()[-1])
    return bool(tuned), seen


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_serve_tunes_itself_and_passes_the_thresholds_to_its_workers() -> None:
    tuned, seen = _tune()
    if not tuned:
        pytest.skip("not glibc: mallopt takes neither threshold")
    assert seen == {k: str(v) for k, v in allocator.ENV.items()}


def test_the_operators_own_threshold_wins() -> None:
    tuned, seen = _tune(MALLOC_TRIM_THRESHOLD_="1048576")
    assert not tuned
    assert seen == {"MALLOC_MMAP_THRESHOLD_": None, "MALLOC_TRIM_THRESHOLD_": "1048576"}
