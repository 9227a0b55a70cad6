"""The server a deployment runs: the HTTP API with the console mounted beside it.

It lives above both front doors so that neither imports the other's package: the
console uses the API's request plumbing, and the API knows nothing of the console.
"""

from __future__ import annotations

from fastapi import FastAPI

from ledger.config import Settings
from ledger.http import app as api
from ledger.web import console


def create_app(settings: Settings | None = None, *, check_db: bool = True) -> FastAPI:
    return api.create_app(settings, check_db=check_db, mounts=(console.install,))
