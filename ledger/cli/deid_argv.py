"""A lean parser for the plain argument lists of ``ledger deid``, so a batch starts without
typer.

``ledger deid IN OUT --key K`` is a command people and pipelines run per batch, and
dicognito, the command it is compared with (``bench/deid.py``), starts in the time
pydicom takes to import. Building the typer app costs as much again (typer, click,
pydantic type adapters for every option, rich, every CLI module), so ``ledger.cli.main``
hands the arguments after ``deid`` to ``parse`` first. It accepts only what it reads
exactly as click does: the two paths and the command's own options, each given once
(``--option`` as often as wanted), as ``--name value`` or ``--name=value``, with plain
values (not empty, not starting with ``-``; ``--jobs`` a plain non-negative integer;
``--burned-in`` one of its choices). Anything else (``--help``, an unknown or repeated
option, a missing path, ``--``) returns None and typer parses it, so help, errors and their
exit codes stay typer's. ``tests/cli/test_deid_argv.py`` checks that the two agree.
"""

from __future__ import annotations

import re
from pathlib import Path

from ledger.cli.deid_run import DEFAULT_KEY, DeidArgs
from ledger.images.deid_options import BurnedIn

FLAGS = {"--create-key": "create_key", "--basic": "basic", "--json": "json_out"}
VALUED = {"--key", "--option", "--scope", "--burned-in", "--jobs"}
PLAIN_INT = re.compile(r"0|[1-9][0-9]{0,5}")


def parse(argv: list[str]) -> DeidArgs | None:
    """``DeidArgs`` for the arguments after ``deid``, or None to let typer parse them."""
    paths: list[Path] = []
    flags: dict[str, bool] = {}
    values: dict[str, str] = {}
    options: list[str] = []
    rest = list(argv)
    while rest:
        token = rest.pop(0)
        if not token.startswith("-"):
            if not token:
                return None
            paths.append(Path(token))
            continue
        name, equals, value = token.partition("=")
        if name in FLAGS and not equals:
            if name in flags:
                return None
            flags[name] = True
            continue
        if name not in VALUED:
            return None
        if not equals:
            if not rest:
                return None
            value = rest.pop(0)
        if not value or value.startswith("-"):
            return None
        if name == "--option":
            options.append(value)
        elif name in values:
            return None
        else:
            values[name] = value
    if len(paths) != 2:
        return None
    jobs = values.get("--jobs", "0")
    burned_in = values.get("--burned-in", BurnedIn.quarantine.value)
    if not PLAIN_INT.fullmatch(jobs) or burned_in not in {b.value for b in BurnedIn}:
        return None
    return DeidArgs(
        source=paths[0],
        target=paths[1],
        key=Path(values["--key"]) if "--key" in values else DEFAULT_KEY,
        create_key="--create-key" in flags,
        option=options or None,
        basic="--basic" in flags,
        scope=values.get("--scope", ""),
        burned_in=BurnedIn(burned_in),
        jobs=int(jobs),
        json_out="--json" in flags,
    )
