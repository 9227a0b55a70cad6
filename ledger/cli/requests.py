"""``ledger requests``: the stewards' queue from a terminal.

Reviews are recorded under a steward principal (``--steward NAME``), never as an anonymous
terminal user, so separation of duties holds here exactly as over HTTP.
"""

from __future__ import annotations

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
from ledger.errors import Forbidden, NotFound
from ledger.principals.roles import Role

if TYPE_CHECKING:
    from ledger.access import service
    from ledger.access.schemas import AccessRequestPublic

app = typer.Typer(help="Access requests: review, approve, reject, replay.", no_args_is_help=True)

StewardOpt = Annotated[str, typer.Option("--steward", help="Your steward principal (name or id).")]
CommentOpt = Annotated[str, typer.Option("--comment", help="Why; kept with the review.")]


def _context(home: Any) -> service.Context:
    from ledger import wiring

    settings = settings_for(home)
    return wiring.context(settings)


def steward_id(session: Any, name: str) -> str:
    from ledger.principals import service as principals

    try:
        principal = principals.get(session, name)
    except NotFound:
        principal = principals.find_by_name(session, name)
    if Role.steward.value not in principal.roles or principal.disabled:
        raise Forbidden(f"{principal.name} is not an active steward")
    return principal.id


def _composition(request: AccessRequestPublic) -> None:
    comp = request.evaluation.composition
    rows = []
    for name, attr in comp["attributes"].items():
        for g in attr["groups"]:
            rows.append(
                (
                    name,
                    g["value"],
                    g["requested"],
                    f"{g['requested_share']:.1%}",
                    g["eligible"],
                    f"{g['eligible_share']:.1%}",
                    f"{attr['distance']:.3f}",
                )
            )
    table(
        "Composition: requested vs eligible",
        ["attribute", "group", "requested", "share", "eligible", "share", "TV distance"],
        rows,
    )
    for warning in comp["warnings"]:
        console.print(f"[bold yellow]warning:[/] {warning}")


@app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="evaluated = pending review")] = "evaluated",
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Requests (default: those waiting for review)."""
    from ledger.access import request_views

    with read_only(home) as session:
        items = [
            request_views.public(session, r) for r in request_views.list_requests(session, status)
        ]
    if json_out:
        emit_json(items)
        return
    table(
        f"Access requests ({status or 'all'})",
        ["id", "purpose", "eligible", "excluded", "approvals", "status", "filed"],
        [
            (
                r.id,
                r.purpose_text,
                r.evaluation.eligible_count,
                r.evaluation.excluded_count,
                f"{_approvals(r)}/{r.evaluation.required_approvals}",
                r.status,
                f"{r.created_at:%Y-%m-%d %H:%M}",
            )
            for r in items
        ],
    )


def _approvals(request: AccessRequestPublic) -> int:
    return sum(v.verdict == "approve" for v in request.reviews)


@app.command("show")
def show(request_id: str, home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """One request with its exclusions and composition table."""
    from ledger.access import request_views

    with read_only(home) as session:
        request = request_views.public(session, request_views.get(session, request_id))
    if json_out:
        emit_json(request)
        return
    e = request.evaluation
    console.print(
        f"[bold]{request.id}[/] {request.status}: {request.purpose_text} on dataset "
        f"{request.dataset_id}, as of {request.as_of:%Y-%m-%d %H:%M:%S %Z}"
    )
    console.print(f"justification: {request.justification}", highlight=False)
    console.print(
        f"eligible {e.eligible_count}, excluded {e.excluded_count}; "
        f"{e.required_approvals} approval(s) required; policy {request.policy_hash[:12]}"
    )
    for reason, n in e.excluded_by_reason.items():
        console.print(f"  excluded {n:>7} by {reason}")
    for reason in e.request_reasons:
        label = "a steward must decide" if e.cohort_ok else "cannot be approved"
        console.print(f"[bold red]{label}:[/] {reason}", highlight=False)
    for name, value in request.conditions.items():
        console.print(f"  states {name.replace('_', ' ')}: {value}", highlight=False)
    for name, value in e.obligations.items():
        console.print(f"  grant obliges {name.replace('_', ' ')}: {value}", highlight=False)
    _composition(request)


@app.command("approve")
def approve(
    request_id: str,
    steward: StewardOpt,
    comment: CommentOpt,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Approve; the last required approval issues the grant and prints it."""
    from ledger.access import service

    ctx = _context(home)
    with unit_of_work(home) as session:
        result = service.approve(
            session, ctx, request_id, steward=steward_id(session, steward), comment=comment
        )
    if json_out:
        emit_json(result)
    elif result.grant:
        console.print(f"Approved; grant {result.grant_id} issued:")
        console.print(result.grant, highlight=False, soft_wrap=True)
    else:
        console.print(f"Approval recorded ({result.approvals}/{result.required_approvals}).")


@app.command("reject")
def reject(
    request_id: str,
    steward: StewardOpt,
    comment: CommentOpt,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Reject with a comment; a rejected request can never be approved."""
    from ledger.access import service

    with unit_of_work(home) as session:
        request = service.reject(
            session, request_id, steward=steward_id(session, steward), comment=comment
        )
        status = request.status
    if json_out:
        emit_json({"id": request_id, "status": status})
    else:
        console.print(f"Rejected {request_id}.")


@app.command("replay")
def replay(request_id: str, home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Re-evaluate as of the request's as_of: the same answer, or what changed and why."""
    from ledger.access import explain

    ctx = _context(home)
    with read_only(home) as session:
        result = explain.replay(session, ctx, request_id)
    if json_out:
        emit_json(result)
        return
    verdict = "[bold green]same answer[/]" if result["same_answer"] else "[bold red]different[/]"
    console.print(
        f"{verdict}: eligible then {result['eligible_then']}, now {result['eligible_now']}"
    )
    console.print(
        f"policy set {'unchanged' if result['same_policy'] else 'changed'} "
        f"({result['policy_hash_then'][:12]} → {result['policy_hash_now'][:12]}); "
        f"consent snapshot {'same' if result['same_consent_snapshot'] else 'different'}"
    )
    for image in result["changed_images"]:
        console.print(f"  changed: {image}")
