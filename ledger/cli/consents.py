"""``ledger subjects``, ``ledger consents`` and ``ledger purposes``: registrar work from a
terminal. Changes are logged with the actor ``cli:<os user>``."""

from __future__ import annotations

import getpass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ledger.cli.output import (
    HomeOpt,
    JsonOpt,
    console,
    emit_json,
    err_console,
    read_only,
    settings_for,
    table,
    unit_of_work,
)
from ledger.consent.decisions import Decision
from ledger.errors import NotFound

if TYPE_CHECKING:
    from ledger.consent.schemas import ConsentPublic, Scope

subjects_app = typer.Typer(help="Patients, by pseudonym.", no_args_is_help=True)
consents_app = typer.Typer(help="Record, withdraw, query and import consent.", no_args_is_help=True)

IssuerOpt = Annotated[str, typer.Option(help="Assigning authority of the patient id.")]
PatientOpt = Annotated[str, typer.Option("--patient-id", help="The hospital's patient id.")]
AsOfOpt = Annotated[
    datetime | None, typer.Option("--as-of", help="Instant to answer for (default now).")
]


def actor() -> str:
    return f"cli:{getpass.getuser()}"


def _pseudonym_key(home: Path | None) -> bytes:
    from ledger import wiring

    return wiring.keys(settings_for(home)).pseudonym_key


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.astimezone()  # a terminal user means their local time
    return value


@subjects_app.command("create")
def subject_create(
    issuer: IssuerOpt,
    patient_id: PatientOpt,
    sex: Annotated[str | None, typer.Option(help="F, M, O or U.")] = None,
    birth_year: Annotated[int | None, typer.Option("--birth-year")] = None,
    site: Annotated[str | None, typer.Option()] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Register a patient (prints the existing subject if already registered)."""
    from ledger.consent import service
    from ledger.consent.schemas import SubjectCreate

    body = SubjectCreate(
        issuer=issuer, patient_id=patient_id, sex=sex, birth_year=birth_year, site=site
    )
    key = _pseudonym_key(home)
    with unit_of_work(home) as session:
        made = service.create_subject(session, key, body, actor=actor())
    if json_out:
        emit_json(made)
    else:
        console.print(f"{'Created' if made.created else 'Existing'} subject {made.id}")


@subjects_app.command("find")
def subject_find(
    issuer: IssuerOpt, patient_id: PatientOpt, home: HomeOpt = None, json_out: JsonOpt = False
) -> None:
    """Find a patient's subject id."""
    from ledger.consent import service, subjects

    key = _pseudonym_key(home)
    with read_only(home) as session:
        found = subjects.find(session, key, issuer, patient_id)
        if found is None:
            raise NotFound("no subject for this patient")
        public = service.subject_public(found)
    if json_out:
        emit_json(public)
    else:
        console.print(public.id)


@consents_app.command("record")
def record(
    subject: Annotated[str, typer.Option("--subject", help="Subject id.")],
    decision: Annotated[Decision, typer.Option(help="permit or deny.")],
    purpose: Annotated[list[str], typer.Option("--purpose", help="Purpose code; repeatable.")],
    modifier: Annotated[list[str] | None, typer.Option("--modifier")] = None,
    modality: Annotated[list[str] | None, typer.Option("--modality")] = None,
    body_part: Annotated[list[str] | None, typer.Option("--body-part")] = None,
    valid_from: Annotated[datetime | None, typer.Option("--valid-from")] = None,
    valid_until: Annotated[datetime | None, typer.Option("--valid-until")] = None,
    evidence_sha256: Annotated[str | None, typer.Option("--evidence-sha256")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record a consent (permit) or a refusal (deny)."""
    from ledger.consent import service
    from ledger.consent.schemas import ConsentCreate, Scope

    body = ConsentCreate(
        subject_id=subject,
        decision=decision,
        purposes=purpose,
        modifiers=modifier or [],
        scope=Scope(modalities=modality or [], body_parts=body_part or []),
        valid_from=_aware(valid_from),
        valid_until=_aware(valid_until),
        evidence_sha256=evidence_sha256,
    )
    with unit_of_work(home) as session:
        row = service.public(service.record(session, body, actor=actor()))
    _print_consents([row], json_out, "Recorded")


@consents_app.command("withdraw")
def withdraw(
    consent_id: Annotated[str, typer.Argument(help="Consent id.")],
    reason: Annotated[str | None, typer.Option()] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Withdraw a consent, effective immediately."""
    from ledger.consent import service
    from ledger.consent.schemas import WithdrawBody

    with unit_of_work(home) as session:
        row = service.public(
            service.withdraw(session, consent_id, WithdrawBody(reason=reason), actor=actor())
        )
    _print_consents([row], json_out, "Withdrawn")


@consents_app.command("show")
def show(
    subject: Annotated[str, typer.Argument(help="Subject id.")],
    as_of: AsOfOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Consents of a subject in force at an instant."""
    from ledger.consent import service

    with read_only(home) as session:
        state = service.state(session, subject, _aware(as_of))
    _print_consents(state.consents, json_out, f"In force at {state.as_of:%Y-%m-%d %H:%M:%S %Z}")


@consents_app.command("check")
def check(
    subject: Annotated[str, typer.Argument(help="Subject id.")],
    purpose: Annotated[str, typer.Option(help="e.g. ai.training or ai.training,HMB")],
    as_of: AsOfOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Is a purpose permitted for a subject? Exit 0 if so, 3 if not."""
    from ledger.consent import service

    with read_only(home) as session:
        answer = service.permission(session, subject, purpose, _aware(as_of))
    if json_out:
        emit_json(answer)
    else:
        verdict = "[bold green]permitted[/]" if answer.permitted else "[bold red]not permitted[/]"
        console.print(f"{answer.purpose}: {verdict}")
        for reason in answer.reasons:
            console.print(f"  - {reason}", highlight=False)
    if not answer.permitted:
        raise typer.Exit(3)


@consents_app.command("import")
def import_csv(
    path: Annotated[Path, typer.Argument(help="CSV file (see README for the columns).")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Import consents from CSV: all rows or none; bad lines are listed with numbers."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from ledger.consent import csv_import

    try:
        data = path.read_bytes()
    except OSError as exc:
        err_console.print(f"[bold red]error:[/] cannot read {path}: {exc.strerror}")
        raise typer.Exit(2) from exc
    key = _pseudonym_key(home)
    try:
        parsed = csv_import.parse(csv_import.decode(data))
        csv_import.check(parsed)
    except csv_import.ImportFailed as exc:
        err_console.print(f"[bold red]error:[/] {exc.detail}", highlight=False, soft_wrap=True)
        for err in exc.extra.get("errors", [])[:50]:
            err_console.print(f"  line {err['line']}: {err['error']}", highlight=False)
        raise typer.Exit(1) from exc
    progress = Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=json_out,
    )
    with progress, unit_of_work(home) as session:
        task = progress.add_task("import", total=len(parsed.rows))
        report = csv_import.import_rows(
            session, key, parsed, actor=actor(), progress=lambda n: progress.advance(task, n)
        )
    if json_out:
        emit_json(report)
    else:
        console.print(
            f"Imported {report.imported:,} consents ({report.subjects_created:,} new subjects)."
        )


@consents_app.command("diseases")
def disease_codes(
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="List only codes that do not normalise; exit 1 if there are any."
        ),
    ] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The disease codes (DS qualifiers) stored consents carry and how each is read.

    Stored codes are never rewritten (they are also in the signed log); a code that does not
    normalise is kept and fails closed: correct it by amending the consent."""
    from ledger.consent import disease_report

    with read_only(home) as session:
        found = disease_report.report(session)
    shown = found.unreadable if check else found.codes
    if json_out:
        emit_json(found.as_json(only_unreadable=check))
    elif check:
        table(
            "Disease codes that do not normalise (kept as stored; they fail closed)",
            ["stored", "consents", "active", "why"],
            [(f"DS:{c.stored}", c.consents, c.active, c.problem or "") for c in shown],
        )
    else:
        table(
            "Disease codes in stored consents",
            ["stored", "read as", "label", "consents", "active", "note"],
            [
                (
                    f"DS:{c.stored}",
                    f"DS:{c.canonical}" if c.canonical else "(kept as stored)",
                    c.label or "",
                    c.consents,
                    c.active,
                    c.problem or ("" if c.hierarchy else "no hierarchy holds it: fails closed"),
                )
                for c in shown
            ],
        )
    if not json_out:
        summary = found.summary()
        console.print(
            f"{summary['codes']} code(s): {summary['canonical']} canonical, "
            f"{summary['normalises']} read normalised, {summary['unreadable']} do not "
            f"normalise; {summary['without_hierarchy']} without a known hierarchy.",
            highlight=False,
        )
    if check and shown:
        raise typer.Exit(1)


def _print_consents(rows: list[ConsentPublic], json_out: bool, title: str) -> None:
    if json_out:
        emit_json(rows)
        return
    table(
        title,
        ["consent", "v", "decision", "purposes", "scope", "valid", "status"],
        [
            (
                r.id,
                r.version,
                r.decision.value,
                ", ".join(r.purposes + r.modifiers),
                _scope_text(r.scope),
                f"{r.valid_from:%Y-%m-%d} → "
                + (f"{r.valid_until:%Y-%m-%d}" if r.valid_until else "open"),
                r.status,
            )
            for r in rows
        ],
    )


def _scope_text(scope: Scope) -> str:
    parts = scope.modalities + scope.body_parts
    if scope.study_date_from or scope.study_date_to:
        parts.append(f"{scope.study_date_from or ''}..{scope.study_date_to or ''}")
    return " ".join(parts) or "all images"


def purposes(json_out: JsonOpt = False) -> None:
    """The purpose tree and modifiers."""
    from ledger.consent.purposes import tree

    data = tree().as_dict()
    if json_out:
        emit_json(data)
        return
    table(
        f"Purposes (version {data['version']})",
        ["code", "parent", "label", "note"],
        [
            (
                p["code"],
                p["parent"] or "",
                p["label"],
                "explicit only"
                if p["explicit_only"]
                else "needs :<disease>"
                if p["needs_qualifier"]
                else "",
            )
            for p in data["purposes"]
        ],
    )
    table("Modifiers", ["code", "label"], [(m["code"], m["label"]) for m in data["modifiers"]])
