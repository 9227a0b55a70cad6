"""The ``ledger`` command. Commands are thin: they parse, call a service, print."""

from __future__ import annotations

import sys

import typer

from ledger.cli import (
    audit,
    consents,
    deid,
    doctor,
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
app.command("doctor")(doctor.doctor)


def main() -> None:
    try:
        app()
    except Exception as exc:
        message = _failure(exc)
        if message is None:
            raise
        err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        sys.exit(1)


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
