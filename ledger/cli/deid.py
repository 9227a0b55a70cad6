"""``ledger deid IN OUT``: de-identify DICOM files with nothing but a key file.

The typer command: its signature is the command's help and options. The work is in
``ledger/cli/deid_run.py``, shared with the lean parser that runs plain batch invocations
without typer (``ledger/cli/deid_argv.py``; a test holds the two parsers to the same
result).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ledger.cli.deid_run import DEFAULT_KEY, OPTION_NAMES, DeidArgs, run
from ledger.images.deid_options import BurnedIn


def deid(
    source: Annotated[Path, typer.Argument(help="A DICOM file or a folder of them.")],
    target: Annotated[Path, typer.Argument(help="Output folder (mirrors the input layout).")],
    key: Annotated[Path, typer.Option(help="Key file (32 random bytes).")] = DEFAULT_KEY,
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
            "--jobs", help="Worker processes (default 0: one per idle core, up to 8; 1: none)."
        ),
    ] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """De-identify per DICOM PS3.15 Annex E; burned-in images go to OUT/quarantine/.

    Every file is written, quarantined, skipped or failed, with a reason. Exit code: 0
    when no file failed, 1 when any did, 2 for a usage error (nothing written)."""
    run(DeidArgs(source, target, key, create_key, option, basic, scope, burned_in, jobs, json_out))
