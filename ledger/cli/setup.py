"""Installation commands: init, serve, demo and database migrations."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ledger.cli.output import HomeOpt, JsonOpt, console, emit_json, settings_for

if TYPE_CHECKING:
    from ledger.config import Settings

db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)

HostOpt = Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")]
PortOpt = Annotated[int | None, typer.Option(help="Port to bind (default 8000).")]


def init(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Create LEDGER_HOME (0700), keys (0600), the database and the first admin key."""
    from ledger.db import redacted
    from ledger.home import init_home

    done = init_home(settings_for(home))
    if json_out:
        emit_json(
            {
                "home": done.home,
                "database_url": redacted(done.database_url),
                "id": done.admin.id,
                "api_key": done.admin.api_key,
            }
        )
        return
    console.print(f"Initialised [bold]{done.home}[/] ({redacted(done.database_url)})")
    console.print("Admin API key (shown once, store it safely):")
    console.print(done.admin.api_key, highlight=False, soft_wrap=True)


WorkersOpt = Annotated[
    int,
    typer.Option(
        min=1,
        help="Worker processes (uvicorn's); each builds its state from LEDGER_HOME and the "
        "environment.",
    ),
]


def _serve(settings: Settings, host: str | None, port: int | None, workers: int = 1) -> None:
    import uvicorn

    from ledger import allocator
    from ledger.http.request_log import uvicorn_log_config

    allocator.tune()  # freed file buffers used again, not new memory for each file

    options: dict[str, Any] = {
        "host": host or settings.host,
        "port": port or settings.port,
        "log_level": "info",
        "log_config": uvicorn_log_config(),
        "access_log": False,  # the ledger writes one line per request, without query strings
    }
    if workers > 1:
        # Each worker process imports the app factory and builds the same state from the
        # environment: the home is passed to them as LEDGER_HOME.
        os.environ["LEDGER_HOME"] = str(settings.home)
        uvicorn.run("ledger.server:create_app", factory=True, workers=workers, **options)
        return
    from ledger.server import create_app

    uvicorn.run(create_app(settings), **options)


def serve(
    home: HomeOpt = None, host: HostOpt = None, port: PortOpt = None, workers: WorkersOpt = 1
) -> None:
    """Serve the HTTP API (refuses an un-migrated database)."""
    _serve(settings_for(home), host, port, workers)


def demo(
    home: Annotated[
        Path | None, typer.Option(help="Empty directory for the demo (default: a new temp dir).")
    ] = None,
    host: HostOpt = None,
    port: PortOpt = None,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Set up, print, exit.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Create a demo installation with one principal per role, print keys, then serve.

    The database is LEDGER_DATABASE_URL when set (an empty one: the demo refuses a
    database that has principals), else SQLite in the demo's home; the output names it."""
    from ledger.config import Settings
    from ledger.demo import DEMO_ISSUER, build_demo, walkthrough
    from ledger.keystore import write_secret

    home = home or Path(tempfile.mkdtemp(prefix="ledger-demo-"))
    settings = Settings(home=home)
    made = build_demo(settings)
    # Commands as this interpreter's environment runs them, activated or not.
    python = Path(sys.executable).absolute()
    ledger_cmd = python.parent / "ledger"
    ledger = str(ledger_cmd) if ledger_cmd.exists() else f"{python} -m ledger"
    base = f"http://{host or settings.host}:{port or settings.port}"
    if json_out:
        emit_json(
            {
                "home": made.home,
                "database": made.database,
                "url": base,
                "keys": made.keys,
                "subjects": made.subjects,
                "consents": made.consents,
                "withdrawn": made.withdrawn,
                "images": made.images,
                "dataset_id": made.dataset_id,
                "request_id": made.request_id,
            }
        )
    else:
        console.print(
            f"Demo home: [bold]{made.home}[/]  (export LEDGER_HOME={made.home})", soft_wrap=True
        )
        console.print(f"Database: {made.database}", highlight=False, soft_wrap=True)
        console.print(
            f"{made.subjects} synthetic patients, {made.consents} consents "
            f"({made.withdrawn} withdrawn), {made.images} DICOM images, dataset "
            f"{made.dataset_id}. API keys:"
        )
        for name, key in made.keys.items():
            console.print(f"  {name:<10} {key}", highlight=False, soft_wrap=True)
        console.print(
            f"\nWeb console: {base}/console/  (sign in with the steward, registrar or "
            "auditor key above)",
            highlight=False,
            soft_wrap=True,
        )
        console.print("\nTry it:", highlight=False)
        admin, registrar = made.keys["admin"], made.keys["registrar"]
        for line in (
            f"curl -s {base}/healthz",
            f"curl -s -H 'Authorization: Bearer {registrar}' {base}/v1/principals/me",
            f"curl -s -H 'Authorization: Bearer {admin}' {base}/v1/principals",
            f"curl -s -X POST -H 'Authorization: Bearer {admin}' -H 'Content-Type: "
            f'application/json\' -d \'{{"name":"ci-bot","kind":"pipeline","roles":'
            f'["pipeline"]}}\' {base}/v1/principals',
            f"curl -s {base}/v1/purposes",
            f"curl -s -X POST -H 'Authorization: Bearer {registrar}' -H 'Content-Type: "
            f'application/json\' -d \'{{"issuer":"{DEMO_ISSUER}","patient_id":'
            f'"DEMO00001"}}\' {base}/v1/subjects/lookup',
            f"curl -s -H 'Authorization: Bearer {registrar}' "
            f"'{base}/v1/subjects/{made.example_subject}/permissions?purpose=ai.training'",
            f"curl -s -H 'Authorization: Bearer {made.keys['curator']}' "
            f"{base}/v1/datasets/{made.dataset_id}",
            f"curl -s -H 'Authorization: Bearer {made.keys['steward']}' "
            f"{base}/v1/access-requests/{made.request_id}   # waiting for a steward",
            f"curl -s -X POST -H 'Authorization: Bearer {made.keys['steward']}' -H 'Content-Type: "
            f'application/json\' -d \'{{"comment":"approved for the demo"}}\' '
            f"{base}/v1/access-requests/{made.request_id}/approve",
            f"curl -s {base}/v1/log/checkpoint   # signed tree head of the log",
            f"{ledger} audit verify --home {made.home}",
            f"open {base}/docs   # interactive OpenAPI",
        ):
            console.print(f"  {line}", highlight=False, soft_wrap=True)
        script = Path(made.home) / "walkthrough.py"
        write_secret(script, walkthrough(made, base).encode())  # it holds API keys: 0600
        console.print(
            "\nEnd to end (request → approve → download → a patient withdraws → release "
            f"refused, revocation listed): in a second terminal run\n  {python} {script}\n"
            "or paste into that Python:\n",
            highlight=False,
            soft_wrap=True,
        )
        console.print(walkthrough(made, base), highlight=False, soft_wrap=True, markup=False)
    if not no_serve:
        _serve(settings, host, port)


@db_app.command("upgrade")
def db_upgrade(
    home: HomeOpt = None,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "heads",
) -> None:
    """Migrate the database to the code's schema (safe to repeat)."""
    from ledger.db import redacted, upgrade

    settings = settings_for(home)
    upgrade(settings.resolved_database_url, revision)
    console.print(
        f"Database {redacted(settings.resolved_database_url)} is up to date ({revision})."
    )


@db_app.command("current")
def db_current(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Show the database revision and the revision the code needs."""
    from ledger.db import current_revision, head_revision, make_engine

    settings = settings_for(home)
    engine = make_engine(settings.resolved_database_url)
    try:
        current = current_revision(engine)
    finally:
        engine.dispose()
    head = head_revision()
    if json_out:
        emit_json({"current": current, "head": head, "up_to_date": current == head})
    else:
        state = "up to date" if current == head else "run `ledger db upgrade`"
        console.print(f"current: {current or 'none'}  head: {head}  ({state})")


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(serve)
    app.command()(demo)
    app.add_typer(db_app, name="db")
