"""The ``ledger`` command. Commands are thin: they parse, call a service, print."""

from __future__ import annotations

import sys

import typer
from sqlalchemy.exc import OperationalError

from ledger.cli import (
    audit,
    consents,
    deid,
    grants,
    images,
    keys,
    policy,
    principals,
    requests,
    setup,
)
from ledger.cli.output import err_console
from ledger.errors import LedgerError
from ledger.policy.engine import PolicyError

app = typer.Typer(
    name="ledger",
    help="Consent and provenance ledger for medical-imaging AI.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
setup.register(app)
app.add_typer(principals.app, name="principals")
app.add_typer(consents.subjects_app, name="subjects")
app.add_typer(consents.consents_app, name="consents")
app.command("purposes")(consents.purposes)
app.command("deid")(deid.deid)
app.add_typer(images.images_app, name="images")
app.add_typer(images.datasets_app, name="datasets")
app.add_typer(audit.app, name="audit")
app.add_typer(keys.app, name="keys")
app.add_typer(policy.app, name="policy")
app.add_typer(requests.app, name="requests")
app.add_typer(grants.grants_app, name="grants")
app.add_typer(grants.models_app, name="models")
app.command("revocations")(grants.revocations_command)
consents.subjects_app.command("impact")(grants.impact)


def main() -> None:
    try:
        app()
    except LedgerError as exc:
        err_console.print(f"[bold red]error:[/] {exc.detail}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except PolicyError as exc:
        err_console.print(
            f"[bold red]error:[/] policy set refused: {exc}", highlight=False, soft_wrap=True
        )
        sys.exit(1)
    except OperationalError as exc:
        err_console.print(
            f"[bold red]error:[/] database unavailable: {exc.orig}", highlight=False, soft_wrap=True
        )
        sys.exit(1)
