"""``ledger doctor``: find (and with ``--fix`` remove) what a crash left in the object store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ledger.cli.output import HomeOpt, JsonOpt, console, emit_json, read_only, settings_for

if TYPE_CHECKING:
    from ledger.images.orphans import Report

FixOpt = Annotated[
    bool, typer.Option("--fix", help="Remove what is found (default: only report it).")
]
MinAgeOpt = Annotated[
    float,
    typer.Option(
        "--min-age",
        min=0,
        help="Leave unreferenced objects younger than this many seconds alone: they may "
        "belong to a transaction still running.",
    ),
]


def doctor(
    fix: FixOpt = False,
    min_age: MinAgeOpt = 3600.0,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Objects in the store that no row refers to (left by a crash between writing an
    object and committing its row, or between an erasure and its deletions), partial
    writes, and image rows whose object is missing. A dry run unless --fix; exit 1 while
    anything is left to repair."""
    from ledger import wiring
    from ledger.images import orphans

    store = wiring.store(settings_for(home))
    with read_only(home) as session:
        report = orphans.scan(session, store, min_age=min_age)
        if fix and report.findings:
            orphans.fix(session, store, report, min_age=min_age)
    if json_out:
        emit_json({**report.as_dict(), "fixed": fix})
    else:
        _print(report, fix)
    if not report.clean:
        raise typer.Exit(1)


def _print(report: Report, fix: bool) -> None:
    console.print(f"{report.objects} file(s) in the object store.")
    for finding in report.findings:
        console.print(
            f"  {finding.kind:<12} {finding.name}  {finding.size} bytes, "
            f"{finding.age_seconds / 60:.0f} min old",
            highlight=False,
        )
    if report.recent:
        console.print(f"{report.recent} unreferenced file(s) too recent to judge; left alone.")
    for row in report.missing:
        console.print(
            f"  [red]missing[/] object {row['sha256']} of image {row['image_id']}",
            highlight=False,
        )
    if not report.findings and not report.missing:
        console.print("Nothing to repair.")
    elif fix:
        console.print(f"Removed {report.removed} of {len(report.findings)} file(s).")
    elif report.findings:
        console.print(f"{len(report.findings)} file(s) to remove: run again with --fix.")
    if report.missing:
        console.print(
            f"{len(report.missing)} image(s) have no object: restore the store from a backup."
        )
