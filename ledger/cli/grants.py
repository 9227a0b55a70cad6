"""``ledger grants``, ``ledger models``, ``ledger revocations`` and ``ledger subjects
impact``: what stewards and auditors ask after a grant is out."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ledger.cli.output import (
    HomeOpt,
    JsonOpt,
    console,
    emit_json,
    read_only,
    settings_for,
    table,
    unit_of_work,
)
from ledger.cli.requests import StewardOpt, steward_id
from ledger.clock import utcnow

if TYPE_CHECKING:
    from ledger.access.models import Grant

grants_app = typer.Typer(help="Grants: list and revoke.", no_args_is_help=True)
models_app = typer.Typer(help="Registered models and their lineage.", no_args_is_help=True)


def _grant_row(g: Grant) -> dict[str, Any]:
    return {
        "id": g.id,
        "request_id": g.request_id,
        "pipeline_id": g.pipeline_id,
        "manifest_root": bytes(g.manifest_root).hex(),
        "issued_at": g.issued_at,
        "expires_at": g.expires_at,
        "revoked_at": g.revoked_at,
        "revoke_reason": g.revoke_reason,
    }


@grants_app.command("list")
def list_grants(
    all_: Annotated[bool, typer.Option("--all", help="include revoked grants")] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Grants, newest first (default: not revoked)."""
    from sqlalchemy import select
    from sqlmodel import col

    from ledger.access.models import Grant

    with read_only(home) as session:
        query = select(Grant).order_by(col(Grant.issued_at).desc())
        if not all_:
            query = query.where(col(Grant.revoked_at).is_(None))
        rows = [_grant_row(g) for g in session.execute(query).scalars()]
    if json_out:
        emit_json(rows)
        return
    table(
        "Grants",
        ["id", "pipeline", "issued", "expires", "revoked"],
        [
            (
                r["id"],
                r["pipeline_id"],
                f"{r['issued_at']:%Y-%m-%d %H:%M}",
                f"{r['expires_at']:%Y-%m-%d}",
                f"{r['revoked_at']:%Y-%m-%d %H:%M}" if r["revoked_at"] else "",
            )
            for r in rows
        ],
    )


@grants_app.command("revoke")
def revoke(
    grant_id: str,
    steward: StewardOpt,
    reason: Annotated[str, typer.Option("--reason", help="Why; pipelines see it.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Revoke a grant: every release under it is refused from now on."""
    from ledger.access import revocations

    with unit_of_work(home) as session:
        grant = revocations.revoke(
            session, grant_id, reason=reason, actor=steward_id(session, steward)
        )
        row = _grant_row(grant)
    if json_out:
        emit_json(row)
    else:
        console.print(f"Revoked grant {grant_id}.")


def revocations_command(
    since: Annotated[
        datetime | None,
        typer.Option(help="ISO 8601 with time zone; default: the last 24 hours"),
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Grants revoked and manifest instances no longer usable since a moment."""
    from ledger import wiring
    from ledger.access import revocations
    from ledger.consent.service import check_as_of

    moment = check_as_of(since) if since else utcnow() - timedelta(days=1)
    policies = wiring.policies(settings_for(home))
    with read_only(home) as session:
        changes = revocations.changes(session, policies, moment, pipeline_id=None)
    if json_out:
        emit_json(changes)
        return
    for g in changes["grants"]:
        console.print(f"grant {g['grant_id']} revoked at {g['revoked_at']}: {g['reason']}")
    for entry in changes["instances"]:
        console.print(
            f"grant {entry['grant_id']}: {len(entry['sop_instance_uids'])} instance(s) no "
            f"longer usable ({', '.join(entry['policy_ids'])})"
        )
    if not changes["grants"] and not changes["instances"]:
        console.print(f"Nothing revoked since {moment:%Y-%m-%d %H:%M:%S %Z}.")


def impact(subject_id: str, home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Which grants, pipelines and models used a subject's images (after a withdrawal)."""
    from ledger import wiring
    from ledger.registry import service as registry

    policies = wiring.policies(settings_for(home))
    with read_only(home) as session:
        report = registry.impact(session, policies, subject_id)
    if json_out:
        emit_json(report)
        return
    if not report["grants"]:
        console.print("No grant included this subject's images.")
        return
    table(
        f"Impact of subject {subject_id}",
        ["grant", "pipeline", "images", "blocked now", "revoked", "models"],
        [
            (
                g["grant_id"],
                g["pipeline_name"] or g["pipeline_id"],
                g["images"],
                g["images_blocked_now"],
                "yes" if g["revoked"] else "",
                ", ".join(f"{m['name']} {m['version']}" for m in g["models"]),
            )
            for g in report["grants"]
        ],
    )


@models_app.command("list")
def list_models(
    flagged: Annotated[bool, typer.Option(help="only models that lost consent")] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Registered models; ``--flagged`` for those whose data lost consent."""
    from ledger import wiring
    from ledger.registry import service as registry

    policies = wiring.policies(settings_for(home))
    with read_only(home) as session:
        models = [registry.describe(session, policies, m) for m in registry.list_models(session)]
    models = [m for m in models if m.flagged or not flagged]
    if json_out:
        emit_json(models)
        return
    table(
        "Models",
        ["id", "name", "version", "grants", "flagged"],
        [(m.id, m.name, m.version, len(m.grants), "FLAGGED" if m.flagged else "") for m in models],
    )


@models_app.command("show")
def show_model(model_id: str, home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """A model's lineage: grants, requests, datasets and what lost consent since."""
    from ledger import wiring
    from ledger.registry import service as registry

    policies = wiring.policies(settings_for(home))
    with read_only(home) as session:
        model = registry.describe(session, policies, registry.get(session, model_id))
    if json_out:
        emit_json(model)
        return
    console.print(f"[bold]{model.name} {model.version}[/] sha256 {model.artefact_sha256}")
    if model.flagged:
        console.print("[bold red]flagged:[/] data it used has lost consent or was revoked")
    table(
        "Lineage",
        ["grant", "usage", "request", "dataset", "images", "lost consent", "revoked"],
        [
            (
                g.grant_id,
                g.usage,
                g.request_id,
                g.dataset_id,
                g.image_count,
                g.images_no_longer_consented,
                "yes" if g.revoked else "",
            )
            for g in model.grants
        ],
    )
