"""``ledger deid IN OUT``: de-identify DICOM files with nothing but a key file."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ledger.cli.output import console, emit_json, err_console
from ledger.images.deid_options import BurnedIn, Option

if TYPE_CHECKING:
    from ledger.images.deid_files import Summary as DeidSummary

OPTION_NAMES = ", ".join(o.name for o in Option)


def _key(path: Path, create: bool) -> bytes:
    if not path.exists():
        if not create:
            err_console.print(
                f"[bold red]error:[/] no key file {path}; pass --create-key to make one "
                "(keep it: the same key gives the same pseudonyms, UIDs and date shifts)"
            )
            raise typer.Exit(2)
        from ledger.keystore import write_secret  # cryptography: only when making a key

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
    burned_in: Annotated[
        BurnedIn,
        typer.Option(
            "--burned-in",
            help="When OCR finds text in the pixels of an image at risk (ultrasound, "
            "secondary capture, ...): quarantine the file, or mask the text and write it.",
        ),
    ] = BurnedIn.quarantine,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs", help="Worker processes (default 0: one per core, up to 8; 1: none)."
        ),
    ] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """De-identify per DICOM PS3.15 Annex E; burned-in images go to OUT/quarantine/.

    Every file is written, quarantined, skipped or failed, with a reason. Exit code: 0
    when no file failed, 1 when any did, 2 for a usage error (nothing written)."""
    from ledger.images.deid import DEFAULT_OPTIONS, Deidentifier
    from ledger.images.deid_files import default_jobs, deidentify_tree, files_under

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
    show = not json_out and total >= 10 and err_console.is_terminal  # long runs, people
    try:
        with _progress(total, show) as advance:
            summary = deidentify_tree(
                engine,
                source,
                target,
                advance,
                burned_in=burned_in,
                jobs=jobs if jobs > 0 else default_jobs(),
            )
    except ValueError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    elapsed = time.perf_counter() - started
    edition = engine.edition  # of table E.1-1, e.g. 2026c
    if json_out:
        emit_json(
            {
                **summary.as_dict(),
                "seconds": round(elapsed, 3),
                "edition": edition,
                "options": sorted(o.name for o in options),
                "burned_in": burned_in.value,
            }
        )
    else:
        _print_summary(summary, elapsed, target, edition, options, burned_in)
    if summary.failed:
        raise typer.Exit(1)


@contextmanager
def _progress(total: int, show: bool) -> Iterator[Callable[[], None] | None]:
    """A progress bar on stderr, redrawn at most ten times a second from the calling
    thread (no refresh thread: the batch may fork worker processes)."""
    if not show:
        yield None
        return
    from rich import progress as rp

    columns = (rp.TextColumn("de-identifying"), rp.BarColumn(), rp.MofNCompleteColumn())
    bar = rp.Progress(*columns, rp.TimeElapsedColumn(), console=err_console, auto_refresh=False)
    drawn = [0.0]

    def advance() -> None:
        bar.advance(task)
        now = time.monotonic()
        if now - drawn[0] >= 0.1:
            bar.refresh()
            drawn[0] = now

    with bar:
        task = bar.add_task("deid", total=total)
        yield advance
        bar.refresh()


LISTED = 20  # files listed per outcome in the printed summary; --json lists them all


def _print_summary(
    summary: DeidSummary,
    elapsed: float,
    target: Path,
    edition: str,
    options: frozenset[Option],
    burned_in: BurnedIn,
) -> None:
    from ledger.images.deid_files import Outcome

    done = summary.written + len(summary.of(Outcome.quarantined))
    rate = done / elapsed if elapsed else 0.0
    console.print(
        f"{len(summary.files)} file(s) in {elapsed:.1f} s ({rate:.0f}/s): "
        f"{summary.written} written ({summary.masked} with burned-in text masked), "
        f"{len(summary.of(Outcome.quarantined))} quarantined, "
        f"{len(summary.of(Outcome.skipped))} skipped, {summary.failed} failed. "
        f"{summary.removed} attributes removed, {summary.replaced} replaced, "
        f"{summary.uids} UIDs remapped.",
        highlight=False,
    )
    console.print(
        f"Profile: table E.1-1 {edition}; basic profile"
        f"{''.join(', ' + o.name for o in sorted(options))}",
        highlight=False,
    )
    if summary.ocr_images:
        each = summary.ocr_seconds / summary.ocr_images
        console.print(
            f"Burned-in text: {summary.ocr_images} image(s) read by OCR in "
            f"{summary.ocr_seconds:.1f} s ({each:.2f} s each); text found is "
            f"{'masked' if burned_in is BurnedIn.mask else 'quarantined'}.",
            highlight=False,
        )
    sections = [
        (Outcome.quarantined, f"quarantined for review (under {target / 'quarantine'})"),
        (Outcome.skipped, "skipped"),
        (Outcome.failed, "failed"),
    ]
    for outcome, title in sections:
        files = summary.of(outcome)
        if not files:
            continue
        colour = "red" if outcome is Outcome.failed else "yellow"
        console.print(f"[bold {colour}]{len(files)} {title}[/], by reason:")
        for reason, count in summary.by_reason(outcome).items():
            console.print(f"  {count:5d}  {reason}", highlight=False)
        for report in files[:LISTED]:
            why = report.detail or report.pixels or "; ".join(report.reasons)
            console.print(f"  - {report.file}: {why}", highlight=False, soft_wrap=True)
        if len(files) > LISTED:
            console.print(f"  ... and {len(files) - LISTED} more (--json lists every file)")
    masked = [f for f in summary.files if f.masked]
    for report in masked[:LISTED]:
        console.print(f"  masked {report.file}: {report.pixels}", highlight=False, soft_wrap=True)
    if summary.failed:
        console.print(f"[bold red]{summary.failed} file(s) failed[/]: exit code 1.")
