"""Console pages with the demo data: server time per page (goal: every page < 200 ms).

Builds the demo installation (300 patients, ~2,400 images, a pending request), approves
the request so grants exist, signs in per role and fetches each main page 20 times in
process, reporting the median and the worst of the app's own ``Server-Timing``.

Usage: python bench/console.py
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi.testclient import TestClient

from ledger.config import Settings
from ledger.demo import build_demo
from ledger.server import create_app

GOAL_MS = 200.0
ROUNDS = 20
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _client(app: object, key: str) -> TestClient:
    client = TestClient(app)  # type: ignore[arg-type]
    token = CSRF.search(client.get("/console/login").text)
    assert token
    client.post("/console/login", data={"api_key": key, "csrf": token.group(1)})
    return client


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="ledger-console-bench-"))
    settings = Settings(home=home, database_url=None, checkpoint_interval=0)
    demo = build_demo(settings)
    app = create_app(settings)
    steward = _client(app, demo.keys["steward"])
    page = steward.get(f"/console/requests/{demo.request_id}")
    csrf = CSRF.search(page.text)
    assert csrf
    steward.post(
        f"/console/requests/{demo.request_id}/approve",
        data={"comment": "bench", "csrf": csrf.group(1)},
    )
    registrar = _client(app, demo.keys["registrar"])
    found = registrar.post(
        "/console/subjects",
        data={
            "issuer": "urn:oid:2.16.840.1.113883.19.5.99999.1",
            "patient_id": "DEMO00001",
            "csrf": CSRF.search(registrar.get("/console/subjects").text).group(1),  # type: ignore[union-attr]
        },
        follow_redirects=False,
    )
    subject_page = found.headers["location"]
    subject_id = subject_page.rsplit("/", 1)[1]
    auditor = _client(app, demo.keys["auditor"])
    pages = [
        ("home", steward, "/console/"),
        ("requests", steward, "/console/requests"),
        ("request", steward, f"/console/requests/{demo.request_id}"),
        ("grants", steward, "/console/grants"),
        ("subject", registrar, subject_page),
        ("audit", auditor, "/console/audit"),
        ("lineage", auditor, f"/console/audit/lineage?kind=subject&id={subject_id}"),
    ]
    worst_page = 0.0
    for name, client, url in pages:
        times = []
        for _ in range(ROUNDS):
            r = client.get(url)
            assert r.status_code == 200, (url, r.status_code)
            times.append(float(r.headers["server-timing"].split("dur=")[1]))
        worst_page = max(worst_page, max(times))
        print(
            f"{name:<9} median {statistics.median(times):6.1f} ms, worst {max(times):6.1f} ms "
            f"(goal < {GOAL_MS:.0f} ms)  {'yes' if max(times) < GOAL_MS else 'NO'}"
        )
    print(f"slowest page {worst_page:.1f} ms (goal < {GOAL_MS:.0f} ms)")


if __name__ == "__main__":
    main()
