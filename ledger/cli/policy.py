"""``ledger policy``: check the Cedar policy set before it decides anything."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ledger.cli.output import JsonOpt, console, emit_json, err_console

app = typer.Typer(help="Cedar policies: validate and test.", no_args_is_help=True)

DirOpt = Annotated[
    Path | None, typer.Option("--dir", help="Policy directory (default: the packaged policies/).")
]


@app.command("validate")
def validate(directory: DirOpt = None, json_out: JsonOpt = False) -> None:
    """Parse every policy and check it against the schema; print the set's hash."""
    from ledger.policy.engine import PolicyError, default_directory, load

    where = directory or default_directory()
    try:
        loaded = load(where)
    except PolicyError as exc:
        err_console.print(f"[bold red]invalid:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    ids = [r.id for r in loaded.rules.values()]
    if json_out:
        emit_json(
            {"valid": True, "hash": loaded.hash, "files": list(loaded.files), "policies": ids}
        )
    else:
        console.print(f"[bold green]valid[/] {len(ids)} policies in {', '.join(loaded.files)}")
        console.print(f"policy set hash {loaded.hash}")


@app.command("test")
def run_tests(directory: DirOpt = None, json_out: JsonOpt = False) -> None:
    """Run the policy test cases in policies/tests/; exit 1 if any fails."""
    from ledger.policy import cases
    from ledger.policy.engine import PolicyError, default_directory

    where = directory or default_directory()
    try:
        results = cases.run(where)
    except PolicyError as exc:
        err_console.print(f"[bold red]invalid:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    failed = [r for r in results if not r.passed]
    if json_out:
        emit_json([r.__dict__ for r in results])
    else:
        for r in results:
            mark = "[green]pass[/]" if r.passed else "[bold red]FAIL[/]"
            console.print(f"{mark} {r.file}: {r.name}" + ("" if r.passed else f" ({r.detail})"))
        console.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise typer.Exit(1)
