"""The two consoles and JSON printing, without typer: shared by every command and by the lean
``ledger deid`` path (``ledger/cli/deid_argv.py``), which must not import typer at all.

rich is imported on the first call (``console()``, ``err_console()``), so a command that
prints nothing through rich never pays for it; ``ledger/cli/output.py`` names the same two
consoles for the typer commands.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


@cache
def console() -> Console:
    """Standard output for people (rich markup, wrapped to the terminal)."""
    from rich.console import Console

    return Console()


@cache
def err_console() -> Console:
    """Standard error: errors, progress bars and notes beside the output."""
    from rich.console import Console

    return Console(stderr=True)


def to_jsonable(value: Any) -> Any:
    """Pydantic models as JSON data; other values as they are. A value can be a model only
    once pydantic is loaded, so a command whose output holds none never imports it."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def emit_json(value: Any) -> None:
    """``value`` as indented JSON on standard output, one write and a flush (as click's
    ``echo`` does, which the typer commands used before)."""
    out = sys.stdout
    out.write(json.dumps(to_jsonable(value), indent=2, default=str) + "\n")
    out.flush()
