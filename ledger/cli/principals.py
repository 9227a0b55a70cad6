"""``ledger principals``: manage people and pipelines from a terminal (admin work)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from ledger.cli.output import HomeOpt, JsonOpt, console, emit_json, table, unit_of_work
from ledger.errors import InvalidInput, NotFound
from ledger.principals.roles import OrganisationType, PrincipalKind

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ledger.principals.schemas import PrincipalPublic

T = TypeVar("T")

app = typer.Typer(help="People and pipelines, their roles and API keys.", no_args_is_help=True)


@app.command("create")
def create(
    name: Annotated[str, typer.Option(help="Unique name.")],
    role: Annotated[list[str], typer.Option("--role", help="Role; repeat for several.")],
    kind: Annotated[PrincipalKind, typer.Option(help="person or pipeline.")] = PrincipalKind.person,
    organisation_type: Annotated[
        OrganisationType,
        typer.Option(
            "--organisation-type",
            help="for_profit, not_for_profit or unknown (NPU consents serve only not_for_profit).",
        ),
    ] = OrganisationType.unknown,
    region: Annotated[
        str | None,
        typer.Option(
            "--region",
            help="ISO 3166-1 alpha-2 country it acts from, e.g. FR (GS consents weigh it).",
        ),
    ] = None,
    institution: Annotated[
        str | None,
        typer.Option(
            "--institution", help="Institution code it acts for, e.g. CHU-LYON (IS consents)."
        ),
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a principal and print its API key once."""
    from ledger.principals import service
    from ledger.principals.schemas import PrincipalCreate

    roles = service.validate_roles(role)
    data = _valid(
        lambda: PrincipalCreate(
            name=name,
            kind=kind,
            roles=roles,
            organisation_type=organisation_type,
            region=region,
            institution=institution,
        )
    )
    with unit_of_work(home) as session:
        made = service.create(session, data, actor=None)
    if json_out:
        emit_json({"id": made.id, "api_key": made.api_key, "name": made.name, "roles": made.roles})
        return
    console.print(
        f"Created {made.kind} [bold]{made.name}[/] ({made.id}) roles={','.join(made.roles)}"
    )
    console.print(f"API key (shown once): {made.api_key}", highlight=False, soft_wrap=True)


@app.command("list")
def list_(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """List every principal."""
    from ledger.principals import service

    items: list[PrincipalPublic] = []
    cursor: str | None = None
    with unit_of_work(home) as session:
        while True:
            rows, cursor = service.list_page(session, cursor, 1000)
            items.extend(service.public(p) for p in rows)
            if cursor is None:
                break
    if json_out:
        emit_json(items)
        return
    table(
        "Principals",
        ["id", "name", "kind", "roles", "disabled", "created"],
        [(p.id, p.name, p.kind, ",".join(p.roles), p.disabled, p.created_at) for p in items],
    )


@app.command("disable")
def disable(
    principal: Annotated[str, typer.Argument(help="Principal id or name.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Disable a principal and revoke its keys."""
    from ledger.principals import service

    with unit_of_work(home) as session:
        target = _find(session, principal)
        done = service.public(service.disable(session, target, actor=None))
    if json_out:
        emit_json(done)
    else:
        console.print(f"Disabled {done.name} ({done.id}); its keys are revoked.")


@app.command("rotate-key")
def rotate_key(
    principal: Annotated[str, typer.Argument(help="Principal id or name.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Revoke a principal's keys and print a new one once."""
    from ledger.principals import service

    with unit_of_work(home) as session:
        made = service.rotate_key(session, _find(session, principal), actor=None)
    if json_out:
        emit_json({"id": made.id, "api_key": made.api_key})
    else:
        console.print(
            f"New API key for {made.name}: {made.api_key}", highlight=False, soft_wrap=True
        )


@app.command("organisation-type")
def set_organisation_type(
    principal: Annotated[str, typer.Argument(help="Principal id or name.")],
    organisation_type: Annotated[
        OrganisationType, typer.Argument(help="for_profit, not_for_profit or unknown.")
    ],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record the organisation a principal acts for (what NPU consents weigh)."""
    from ledger.principals import service

    with unit_of_work(home) as session:
        done = service.public(
            service.set_organisation_type(
                session, _find(session, principal), organisation_type, actor=None
            )
        )
    if json_out:
        emit_json(done)
    else:
        console.print(f"{done.name} ({done.id}): organisation type {done.organisation_type}")


@app.command("region")
def set_region(
    principal: Annotated[str, typer.Argument(help="Principal id or name.")],
    region: Annotated[
        str, typer.Argument(help="ISO 3166-1 alpha-2 country (e.g. FR), or '' for none.")
    ],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record the country a principal acts from (what GS consents weigh)."""
    from ledger.principals import service
    from ledger.principals.schemas import RegionSet

    body = _valid(lambda: RegionSet(region=region))
    with unit_of_work(home) as session:
        done = service.public(
            service.set_region(session, _find(session, principal), body.region, actor=None)
        )
    if json_out:
        emit_json(done)
    else:
        console.print(f"{done.name} ({done.id}): region {done.region or 'none'}")


@app.command("institution")
def set_institution(
    principal: Annotated[str, typer.Argument(help="Principal id or name.")],
    institution: Annotated[
        str, typer.Argument(help="Institution code (e.g. CHU-LYON), or '' for none.")
    ],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record the institution a principal acts for (what IS consents list)."""
    from ledger.principals import service
    from ledger.principals.schemas import InstitutionSet

    body = _valid(lambda: InstitutionSet(institution=institution))
    with unit_of_work(home) as session:
        done = service.public(
            service.set_institution(
                session, _find(session, principal), body.institution, actor=None
            )
        )
    if json_out:
        emit_json(done)
    else:
        console.print(f"{done.name} ({done.id}): institution {done.institution or 'none'}")


def _valid(make: Callable[[], T]) -> T:
    """Build a schema, its validation error as the one line a person reads."""
    from pydantic import ValidationError

    try:
        return make()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise InvalidInput(f"{where}: {first['msg']}") from None


def _find(session: Session, ref: str) -> str:
    from ledger.principals import service

    try:
        return service.get(session, ref).id
    except NotFound:
        return service.find_by_name(session, ref).id
