"""What ``ledger deid IN OUT`` does once its arguments are parsed, without typer.

Two front ends call ``run``: the typer command (``ledger/cli/deid.py``: help, errors and
every argument list) and the lean parser (``ledger/cli/deid_argv.py``), which takes the
plain argument lists of a batch run so that the command starts without typer, pydantic and
the rest of the CLI. Both give the same ``DeidArgs``; exit codes are ``SystemExit``: 0 when
no file failed, 1 when any did, 2 for a usage error (nothing written).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.cli.terminal import console, emit_json, err_console
from ledger.images.deid_options import BurnedIn, Option

if TYPE_CHECKING:
    from ledger.images.deid_files import Summary as DeidSummary

OPTION_NAMES = ", ".join(o.name for o in Option)
DEFAULT_KEY = Path("deid.key")


@dataclass(frozen=True)
class DeidArgs:
    """The command's arguments, with its defaults (the typer signature uses these)."""

    source: Path
    target: Path
    key: Path = DEFAULT_KEY
    create_key: bool = False
    option: list[str] | None = field(default=None)
    basic: bool = False
    scope: str = ""
    burned_in: BurnedIn = BurnedIn.quarantine
    jobs: int = 0
    json_out: bool = False


def _usage_error(message: str) -> SystemExit:
    err_console().print(f"[bold red]error:[/] {message}")
    return SystemExit(2)


def _key(path: Path, create: bool) -> bytes:
    if not path.exists():
        if not create:
            raise _usage_error(
                f"no key file {path}; pass --create-key to make one "
                "(keep it: the same key gives the same pseudonyms, UIDs and date shifts)"
            )
        from ledger.keystore import write_secret  # cryptography: only when making a key

        path.parent.mkdir(parents=True, exist_ok=True)
        write_secret(path, secrets.token_bytes(32))
        err_console().print(f"created key file {path} (0600)")
    data = path.read_bytes()
    if len(data) < 32:
        raise _usage_error(f"{path} holds {len(data)} bytes; a key is 32 or more")
    return data


def run(args: DeidArgs) -> None:
    """De-identify ``args.source`` into ``args.target``, print the summary (or JSON), and
    raise ``SystemExit`` with the exit code when it is not 0."""
    from ledger.images.deid import DEFAULT_OPTIONS, Deidentifier
    from ledger.images.deid_files import default_jobs, deidentify_tree, files_under

    if not args.source.exists():
        raise _usage_error(f"{args.source} does not exist")
    try:
        options = (
            frozenset()
            if args.basic
            else (frozenset(Option[o] for o in args.option) if args.option else DEFAULT_OPTIONS)
        )
    except KeyError as exc:
        raise _usage_error(f"unknown option {exc}; one of: {OPTION_NAMES}") from exc
    engine = Deidentifier(_key(args.key, args.create_key), options, uid_scope=args.scope)
    total = sum(1 for _ in files_under(args.source))
    started = time.perf_counter()
    show = not args.json_out and total >= 10 and err_console().is_terminal  # long runs, people
    try:
        with _progress(total, show) as advance:
            summary = deidentify_tree(
                engine,
                args.source,
                args.target,
                advance,
                burned_in=args.burned_in,
                jobs=args.jobs if args.jobs > 0 else default_jobs(),
            )
    except ValueError as exc:
        raise _usage_error(str(exc)) from exc
    elapsed = time.perf_counter() - started
    edition = engine.edition  # of table E.1-1, e.g. 2026c
    if args.json_out:
        emit_json(
            {
                **summary.as_dict(),
                "seconds": round(elapsed, 3),
                "edition": edition,
                "options": sorted(o.name for o in options),
                "burned_in": args.burned_in.value,
            }
        )
    else:
        _print_summary(summary, elapsed, args.target, edition, options, args.burned_in)
    if summary.failed:
        raise SystemExit(1)


@contextmanager
def _progress(total: int, show: bool) -> Iterator[Callable[[], None] | None]:
    """A progress bar on stderr, redrawn at most ten times a second from the calling
    thread (no refresh thread: the batch may fork worker processes)."""
    if not show:
        yield None
        return
    from rich import progress as rp

    columns = (rp.TextColumn("de-identifying"), rp.BarColumn(), rp.MofNCompleteColumn())
    bar = rp.Progress(*columns, rp.TimeElapsedColumn(), console=err_console(), auto_refresh=False)
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

    out = console()
    done = summary.written + len(summary.of(Outcome.quarantined))
    rate = done / elapsed if elapsed else 0.0
    out.print(
        f"{len(summary.files)} file(s) in {elapsed:.1f} s ({rate:.0f}/s): "
        f"{summary.written} written ({summary.masked} with burned-in text masked), "
        f"{len(summary.of(Outcome.quarantined))} quarantined, "
        f"{len(summary.of(Outcome.skipped))} skipped, {summary.failed} failed. "
        f"{summary.removed} attributes removed, {summary.replaced} replaced, "
        f"{summary.uids} UIDs remapped.",
        highlight=False,
    )
    out.print(
        f"Profile: table E.1-1 {edition}; basic profile"
        f"{''.join(', ' + o.name for o in sorted(options))}",
        highlight=False,
    )
    if summary.ocr_images:
        each = summary.ocr_seconds / summary.ocr_images
        out.print(
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
        out.print(f"[bold {colour}]{len(files)} {title}[/], by reason:")
        for reason, count in summary.by_reason(outcome).items():
            out.print(f"  {count:5d}  {reason}", highlight=False)
        for report in files[:LISTED]:
            why = report.detail or report.pixels or "; ".join(report.reasons)
            out.print(f"  - {report.file}: {why}", highlight=False, soft_wrap=True)
        if len(files) > LISTED:
            out.print(f"  ... and {len(files) - LISTED} more (--json lists every file)")
    masked = [f for f in summary.files if f.masked]
    for report in masked[:LISTED]:
        out.print(f"  masked {report.file}: {report.pixels}", highlight=False, soft_wrap=True)
    if summary.failed:
        out.print(f"[bold red]{summary.failed} file(s) failed[/]: exit code 1.")
