"""Printing for people (rich tables) and scripts (``--json``), and shared CLI plumbing.

Every ``ledger/cli`` module imports at its top only what typer needs to build the commands
(typer, the standard library, light enums for option types, this module): ``ledger --help``
must not pay for SQLAlchemy, FastAPI, pydicom or cedarpy. Commands import services, models
and settings in their bodies; ``bench/startup.py`` measures the result. The consoles and
JSON printing live in ``ledger/cli/terminal.py`` (no typer), shared with the lean
``ledger deid`` path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ledger.cli import terminal
from ledger.cli.terminal import emit_json as emit_json
from ledger.cli.terminal import to_jsonable as to_jsonable

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ledger.config import Settings

console = terminal.console()
err_console = terminal.err_console()

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help="Data directory (default: $LEDGER_HOME or ./.ledger)."),
]


def settings_for(home: Path | None) -> Settings:
    from ledger.config import Settings

    return Settings(home=home) if home is not None else Settings()


@contextmanager
def unit_of_work(home: Path | None) -> Iterator[Session]:
    from ledger.db import transaction
    from ledger.home import open_engine

    engine = open_engine(settings_for(home))
    try:
        with transaction(engine) as session:
            yield session
    finally:
        engine.dispose()


@contextmanager
def read_only(home: Path | None) -> Iterator[Session]:
    from ledger.db import snapshot
    from ledger.home import open_engine

    engine = open_engine(settings_for(home))
    try:
        with snapshot(engine) as session:
            yield session
    finally:
        engine.dispose()


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*(str(c) for c in row))
    console.print(t)
