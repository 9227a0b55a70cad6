"""Pure modules import no FastAPI and no database (design §8): each is checked alone in a
fresh interpreter, because importing it here would find the server already loaded.

``ledger.images.deid`` may load pydicom and ``ledger.policy.engine`` cedarpy: those are
what they are for.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

BANNED = ("fastapi", "starlette", "sqlalchemy", "sqlmodel")

PURE = [
    "ledger.provenance.merkle",
    "ledger.provenance.note",
    "ledger.images.deid",
    "ledger.policy.engine",
    "ledger.access.tokens",
    "ledger.canonical",
    "ledger.clock",
    "ledger.errors",
    "ledger.limits",
]


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_web_framework_or_database(module: str) -> None:
    script = f"import json, sys, {module}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = {name.partition(".")[0] for name in json.loads(done.stdout.splitlines()[-1])}
    assert sorted(loaded & set(BANNED)) == [], f"{module} loads {sorted(loaded & set(BANNED))}"
