"""The typer application: every command, registered once. ``ledger.cli.main`` builds it
unless the lean ``ledger deid`` parser takes the arguments (``ledger/cli/deid_argv.py``)."""

from __future__ import annotations

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
