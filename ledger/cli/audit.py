"""``ledger audit``: verify the log, export it for offline checking, sign checkpoints.

Exit codes are for scripts and schedulers: 0 the log verifies, 1 a fault was found (the
message names the first bad index), 2 the input could not be read at all.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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

if TYPE_CHECKING:
    from ledger.provenance.note import Verifier
    from ledger.provenance.verify import Report, SignedCheckpoint

app = typer.Typer(help="Verify and export the tamper-evident log.", no_args_is_help=True)

BundleOpt = Annotated[
    Path | None,
    typer.Option("--bundle", help="Verify this exported bundle offline (no database, no server)."),
]
CheckpointOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--checkpoint",
        help="A signed note you saved earlier; the log must still contain it (catches "
        "rollback and equivocation). Repeatable.",
    ),
]
KeyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--key",
        help="Trusted verifier key (name+hash+base64) or @file with one per line. "
        "Repeatable. Default: the installation's keys, or for --bundle the bundle's own.",
    ),
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _keys(values: list[str] | None) -> list[Verifier]:
    from ledger.provenance.note import NoteError, Verifier

    texts: list[str] = []
    for value in values or []:
        if value.startswith("@"):
            texts.extend(line for line in Path(value[1:]).read_text().splitlines() if line.strip())
        else:
            texts.append(value)
    try:
        return [Verifier.decode(t) for t in texts]
    except NoteError as exc:
        raise _fail(str(exc)) from exc


def _witnessed(paths: list[Path] | None) -> list[SignedCheckpoint]:
    from ledger.provenance.verify import SignedCheckpoint

    out = []
    for path in paths or []:
        try:
            out.append(SignedCheckpoint(path.read_text(), f"saved checkpoint {path.name}"))
        except (OSError, UnicodeDecodeError) as exc:
            raise _fail(f"cannot read {path}: {exc}") from exc
    return out


def _report(report: Report, json_out: bool, extra: dict[str, Any]) -> None:
    from ledger.provenance.schemas import b64

    if json_out:
        emit_json(
            {
                "ok": report.ok,
                "entries": report.entries,
                "root_hash": b64(report.root_hash),
                "checkpoints_checked": report.checkpoints_checked,
                "first_bad_index": report.first_bad_index,
                "faults": [{"index": f.index, "message": f.message} for f in report.faults],
                **extra,
            }
        )
    elif report.ok:
        console.print(
            f"[bold green]OK[/] {report.entries:,} entries, root {b64(report.root_hash)}, "
            f"{report.checkpoints_checked} checkpoint(s) match",
            soft_wrap=True,
        )
    else:
        where = report.first_bad_index
        console.print(
            "[bold red]FAILED[/] the log cannot be trusted"
            + (f" from entry {where} on" if where is not None else ""),
            soft_wrap=True,
        )
        for fault in report.faults:
            at = f"[{fault.index}] " if fault.index is not None else ""
            console.print(f"  - {at}{fault.message}", highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


@app.command("verify")
def verify(
    bundle_path: BundleOpt = None,
    checkpoint: CheckpointOpt = None,
    key: KeyOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Recompute hash chain and Merkle tree from every entry and check every checkpoint."""
    from ledger import wiring
    from ledger.db import redacted
    from ledger.provenance import bundle, checkpoints
    from ledger.provenance.integrity import verify_database

    pinned = _keys(key)
    witnessed = _witnessed(checkpoint)
    if bundle_path is not None:
        try:
            report, manifest = bundle.verify_bundle(bundle_path, pinned or None, witnessed)
        except bundle.BundleError as exc:
            raise _fail(str(exc)) from exc
        if not pinned and not json_out:
            err_console.print(
                "note: trusting the keys named inside the bundle; pin keys you obtained "
                "independently with --key",
                highlight=False,
            )
        _report(report, json_out, {"origin": manifest.get("origin"), "source": str(bundle_path)})
        return
    settings = settings_for(home)
    # Name the database read: a home and LEDGER_DATABASE_URL can point at different ones.
    database = redacted(settings.resolved_database_url)
    if not json_out:
        console.print(f"Database: {database}", highlight=False, soft_wrap=True)
    keys = pinned or checkpoints.verifiers(wiring.keys(settings), settings.log_origin)
    with read_only(home) as session:
        report = verify_database(session, keys, settings.log_origin, witnessed)
    _report(
        report,
        json_out,
        {"origin": settings.log_origin, "source": "database", "database": database},
    )


@app.command("export")
def export(
    out: Annotated[Path, typer.Argument(help="Bundle file to write (a zip).")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write entries, checkpoints and public keys to one file for offline verification."""
    from ledger import wiring
    from ledger.provenance import bundle

    settings = settings_for(home)
    keys = wiring.keys(settings)
    with read_only(home) as session:
        done = bundle.export(session, out, keys, settings.log_origin)
    if json_out:
        emit_json(
            {"path": str(done.path), "entries": done.entries, "checkpoints": done.checkpoints}
        )
    else:
        console.print(
            f"Wrote {done.path}: {done.entries:,} entries, {done.checkpoints} checkpoint(s). "
            f"Check it anywhere with: ledger audit verify --bundle {done.path}",
            soft_wrap=True,
        )


@app.command("checkpoint")
def checkpoint_(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Sign the current tree head now and print the signed note (save it to audit later)."""
    from ledger import wiring
    from ledger.provenance import checkpoints
    from ledger.provenance.schemas import CheckpointPublic

    settings = settings_for(home)
    keys = wiring.keys(settings)
    with unit_of_work(home) as session:
        record = checkpoints.create(session, checkpoints.LogTree(), keys, settings.log_origin)
        public = CheckpointPublic.of(record)
    if json_out:
        emit_json(public)
    else:
        typer.echo(public.note, nl=False)


@app.command("keys")
def keys_(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Print the verifier keys checkpoints are signed with, to pin them with --key."""
    from ledger import wiring
    from ledger.provenance import checkpoints

    settings = settings_for(home)
    encoded = [
        v.encode() for v in checkpoints.verifiers(wiring.keys(settings), settings.log_origin)
    ]
    if json_out:
        emit_json(encoded)
    else:
        for line in encoded:
            typer.echo(line)


@app.command("lineage")
def lineage_(
    kind: Annotated[str, typer.Argument(help="subject, grant, model or dataset.")],
    item_id: Annotated[str, typer.Argument(help="Its identifier.")],
    prov: Annotated[
        Path | None, typer.Option("--prov", help="Also write W3C PROV-JSON to this file.")
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Everything the log records about a subject, grant, model or dataset."""
    from ledger.audit import queries as audit
    from ledger.audit.prov_export import prov_json

    settings = settings_for(home)
    with read_only(home) as session:
        found = audit.lineage(session, kind, item_id)
    if prov is not None:
        prov.write_text(json.dumps(prov_json(found, settings.log_origin), indent=2))
    if json_out:
        emit_json(
            {
                "ref": found.ref,
                "summary": found.by_category(),
                "truncated": found.truncated,
                "events": [dataclasses.asdict(e) for e in found.events],
            }
        )
        return
    table(
        f"Lineage of {kind} {item_id}" + (" (truncated)" if found.truncated else ""),
        ["index", "time", "event", "actor", "data"],
        [
            (e.seq, e.time, e.type, e.actor or "", json.dumps(e.data, sort_keys=True)[:80])
            for e in found.events
        ],
    )
    if prov is not None:
        console.print(f"PROV-JSON written to {prov}")


@app.command("releases-after-withdrawal")
def releases_after_withdrawal(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Re-check every logged release against consent at that moment; exit 1 if any
    subject was released without consent in force."""
    from ledger.audit import queries as audit

    with read_only(home) as session:
        found, checked = audit.releases_without_consent(session)
    if json_out:
        emit_json({"checked": checked, "violations": [dataclasses.asdict(v) for v in found]})
    elif not found:
        console.print(
            f"[bold green]OK[/] {checked:,} released subject(s) checked, none without consent"
        )
    else:
        table(
            f"{len(found)} release(s) without consent in force",
            ["index", "time", "grant", "purpose", "subject", "why"],
            [
                (
                    v.index,
                    v.time,
                    v.grant_id or "",
                    v.purpose,
                    v.subject[:16] + "…",
                    "; ".join(v.reasons),
                )
                for v in found
            ],
        )
    if found:
        raise typer.Exit(1)
