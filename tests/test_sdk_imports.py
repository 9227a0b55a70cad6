"""What importing the SDK and the CLI costs: pipelines install the SDK beside their training
code and must not pull in the server; ``ledger --help`` must not wait for SQLAlchemy.

Each check runs in a fresh interpreter, since this test process has the server loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SERVER = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "sqlmodel")
HEAVY = (*SERVER, "pydicom", "cedarpy", "numpy")


def loaded_after(code: str) -> set[str]:
    """The top-level packages in ``sys.modules`` after running ``code`` in a new process."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return {name.partition(".")[0] for name in json.loads(done.stdout.splitlines()[-1])}


def test_sdk_loads_httpx_and_joserfc_and_nothing_of_the_server() -> None:
    loaded = loaded_after("import ledger.client")
    # not even the settings: token verification names their JwsAlg for mypy only
    assert sorted(loaded & {*HEAVY, "pydantic", "pydantic_settings"}) == []
    assert {"httpx", "joserfc", "cryptography"} <= loaded


def test_sdk_public_names_import() -> None:
    loaded = loaded_after(
        "from ledger.client import *  # noqa: F403\n"
        "import ledger.client\n"
        "assert all(hasattr(ledger.client, n) for n in ledger.client.__all__)\n"
        "import ledger\n"
        "assert ledger.LedgerClient is ledger.client.LedgerClient"
    )
    assert sorted(loaded & {*HEAVY, "pydantic", "pydantic_settings"}) == []


def test_the_dicomweb_calls_are_the_clients_and_load_nothing_of_the_server() -> None:
    loaded = loaded_after(
        "import ledger.client, ledger.client_dicomweb as d\n"
        "c = ledger.client.LedgerClient\n"
        "assert issubclass(c, d.DicomwebCalls)\n"
        "for n in ('dicomweb_url', 'dicomweb_headers', 'search_studies', 'search_series',\n"
        "          'search_instances', 'retrieve_study', 'retrieve_series',\n"
        "          'retrieve_instance', 'retrieve_metadata'):\n"
        "    assert callable(getattr(c, n)), n\n"
        "assert ledger.client.GRANT_HEADER == d.GRANT_HEADER"
    )
    assert sorted(loaded & {*HEAVY, "pydantic", "pydantic_settings"}) == []


def test_package_root_loads_nothing_of_the_ledger() -> None:
    loaded = loaded_after("import ledger\nassert ledger.__version__")
    assert sorted(loaded & {*HEAVY, "httpx", "joserfc", "pydantic"}) == []


@pytest.mark.parametrize(
    "code",
    [
        "import ledger.cli",
        # building every command evaluates every option's annotation, as --help does
        "import typer.main, ledger.cli\ntyper.main.get_command(ledger.cli.app)",
    ],
)
def test_cli_start_loads_nothing_of_the_server(code: str) -> None:
    loaded = loaded_after(code)
    assert sorted(loaded & set(HEAVY)) == []
