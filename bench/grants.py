"""Grant tokens: signatures and verifications per second, and token size.

Goal (docs/architecture.md §4): >= 5,000 signs/s and >= 5,000 verifies/s; token <= 2 KB whatever the
dataset size. Usage: python bench/grants.py [--seconds S]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.access.tokens import GRANT_TYP, public_keys, sign, verify
from ledger.keystore import create_keys, load_keyring

GOAL = 5_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp()) / "keys"
    create_keys(home)
    keys = load_keyring(home)
    public = public_keys(keys)
    now = int(time.time())
    claims = {
        "iss": "https://ledger.hospital.example",
        "sub": "3f1c2a9e-0000-4000-8000-000000000000",
        "aud": "ledger-release",
        "iat": now,
        "nbf": now,
        "exp": now + 86_400,
        "jti": "0b9a7c1e-1111-4222-8333-444455556666",
        "purpose": "ai.training,DS:C34",
        "manifest_root": "ab" * 32,
        "image_count": 1_000_000,
        "policy_hash": "cd" * 32,
        "as_of": "2026-11-25T12:00:00.000000Z",
        "log_index": 12_345_678,
    }
    n, end = 0, time.perf_counter() + args.seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        token = sign(keys, GRANT_TYP, claims)
        n += 1
    signs = n / (time.perf_counter() - start)
    n, end = 0, time.perf_counter() + args.seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        verify(token, public, typ=GRANT_TYP, audience="ledger-release")
        n += 1
    verifies = n / (time.perf_counter() - start)
    for label, rate in (("sign", signs), ("verify", verifies)):
        print(f"{label:<7} {rate:9,.0f}/s (goal >= {GOAL:,})  {'yes' if rate >= GOAL else 'NO'}")
    size = len(token)
    print(
        f"token   {size:9,} bytes for a 1,000,000-image grant (goal <= 2,048)  "
        f"{'yes' if size <= 2048 else 'NO'}"
    )


if __name__ == "__main__":
    main()
