"""``ledger deid IN OUT``: de-identify DICOM files with nothing but a key file."""

from __future__ import annotations

import dataclasses
import secrets
import time
from pathlib import Path
from typing import Annotated

import typer

from ledger.cli.output import console, emit_json, err_console
from ledger.images.deid_options import Option

OPTION_NAMES = ", ".join(o.name for o in Option)


def _key(path: Path, create: bool) -> bytes:
    from ledger.keystore import write_secret

    if not path.exists():
        if not create:
            err_console.print(
                f"[bold red]error:[/] no key file {path}; pass --create-key to make one "
                "(keep it: the same key gives the same pseudonyms, UIDs and date shifts)"
            )
            raise typer.Exit(2)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_secret(path, secrets.token_bytes(32))
        err_console.print(f"created key file {path} (0600)")
    data = path.read_bytes()
    if len(data) < 32:
        err_console.print(
            f"[bold red]error:[/] {path} holds {len(data)} bytes; a key is 32 or more"
        )
        raise typer.Exit(2)
    return data


def deid(
    source: Annotated[Path, typer.Argument(help="A DICOM file or a folder of them.")],
    target: Annotated[Path, typer.Argument(help="Output folder (mirrors the input layout).")],
    key: Annotated[Path, typer.Option(help="Key file (32 random bytes).")] = Path("deid.key"),
    create_key: Annotated[bool, typer.Option("--create-key", help="Create the key file.")] = False,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", help=f"Annex E option; repeatable. One of: {OPTION_NAMES}."),
    ] = None,
    basic: Annotated[bool, typer.Option("--basic", help="Basic profile only, no options.")] = False,
    scope: Annotated[
        str, typer.Option(help="UID scope: the same scope gives the same new UIDs.")
    ] = "",
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """De-identify per DICOM PS3.15 Annex E; burned-in images go to OUT/quarantine/."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from ledger.images.deid import DEFAULT_OPTIONS, Deidentifier
    from ledger.images.deid_files import deidentify_tree, files_under

    if not source.exists():
        err_console.print(f"[bold red]error:[/] {source} does not exist")
        raise typer.Exit(2)
    try:
        options = (
            frozenset()
            if basic
            else (frozenset(Option[o] for o in option) if option else DEFAULT_OPTIONS)
        )
    except KeyError as exc:
        err_console.print(f"[bold red]error:[/] unknown option {exc}; one of: {OPTION_NAMES}")
        raise typer.Exit(2) from exc
    engine = Deidentifier(_key(key, create_key), options, uid_scope=scope)
    total = sum(1 for _ in files_under(source))
    started = time.perf_counter()
    progress = Progress(
        TextColumn("de-identifying"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=json_out,
    )
    try:
        with progress:
            task = progress.add_task("deid", total=total)
            summary = deidentify_tree(engine, source, target, lambda: progress.advance(task))
    except ValueError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    elapsed = time.perf_counter() - started
    if json_out:
        emit_json(
            {
                **dataclasses.asdict(summary),
                "seconds": round(elapsed, 3),
                "options": sorted(o.name for o in options),
            }
        )
    else:
        rate = summary.processed / elapsed if elapsed else 0.0
        console.print(
            f"De-identified {summary.processed} file(s) in {elapsed:.1f} s ({rate:.0f}/s): "
            f"{summary.removed} attributes removed, {summary.replaced} replaced, "
            f"{summary.uids} UIDs remapped."
        )
        console.print(f"Options: basic profile{''.join(', ' + o.name for o in sorted(options))}")
        if summary.quarantined:
            console.print(
                f"[bold yellow]{len(summary.quarantined)} quarantined[/] for review "
                f"(under {target / 'quarantine'}):"
            )
            for line in summary.quarantined:
                console.print(f"  - {line}", highlight=False)
        if summary.skipped:
            console.print(f"[bold yellow]{len(summary.skipped)} skipped[/]:")
            for item in summary.skipped:
                console.print(f"  - {item['file']}: {item['reason']}", highlight=False)
