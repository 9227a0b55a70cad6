"""The ``ledger`` command. Commands are thin: they parse, call a service, print.

``import ledger.cli`` is light: the typer application is built in ``ledger/cli/commands.py``
and named here on first use (``from ledger.cli import app``). ``main`` gives a plain
``ledger deid`` batch to the lean parser first, so it starts without typer
(``ledger/cli/deid_argv.py``); everything else, help and errors included, goes to typer.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import TYPE_CHECKING, Any

from ledger.errors import LedgerError

if TYPE_CHECKING:
    import typer

    app: typer.Typer


def __getattr__(name: str) -> Any:
    if name == "app":
        from ledger.cli.commands import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    try:
        if not _lean(sys.argv[1:]):
            from ledger.cli.commands import app

            app()
    except Exception as exc:
        message = _failure(exc)
        if message is None:
            raise
        from ledger.cli.terminal import err_console

        err_console().print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        sys.exit(1)


def _lean(argv: list[str]) -> bool:
    """Run ``ledger deid`` without typer when the lean parser reads all its arguments."""
    if argv[:1] != ["deid"]:
        return False
    from ledger.cli.deid_argv import parse

    args = parse(argv[1:])
    if args is None:
        return False
    from ledger.cli.deid_run import run

    try:
        run(args)
    except KeyboardInterrupt:
        sys.exit(130)  # as typer exits on Ctrl-C: quietly, 128 + SIGINT
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        # as typer does for output piped into a reader that stopped (``| head``): exit 1
        # quietly, and let nothing flush into the closed pipe at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    return True


def _failure(exc: Exception) -> str | None:
    """The one line a person sees for an error the ledger expects; None lets it through.

    Policy and database errors are recognised only once their modules are loaded: a module
    not imported cannot have raised, and importing cedarpy or SQLAlchemy here to name their
    classes would make every command, ``--help`` included, pay for them."""
    if isinstance(exc, LedgerError):
        return exc.detail
    engine = sys.modules.get("ledger.policy.engine")
    if engine is not None and isinstance(exc, engine.PolicyError):
        return f"policy set refused: {exc}"
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, sa_exc.OperationalError):
        return f"database unavailable: {exc.orig}"
    return None
