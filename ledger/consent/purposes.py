"""The purpose tree, loaded from the versioned data file beside this module.

Two rules make it more than a tree walk:

* consent to a node covers its descendants, except an ``explicit_only`` node (the
  generative-AI purpose): only a permit naming it, or one of its descendants, covers it;
* a denial covers every descendant, explicit or not (fail closed).

A request names at most one AI purpose and at most one DUO research category
(``ai.training``, ``ai.training,DS:C34``, ``HMB``). ``DS`` always carries a disease
qualifier (``DS:<code>``), and a qualified node covers only itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from ledger.errors import InvalidInput

QUALIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")


@dataclass(frozen=True)
class Purpose:
    code: str
    parent: str | None
    branch: str  # "ai" or "duo"
    label: str
    duo: str | None = None
    explicit_only: bool = False
    needs_qualifier: bool = False


@dataclass(frozen=True)
class Request:
    """What a request asks for: an AI purpose and/or a DUO research category."""

    ai: str | None
    duo: str | None

    def __str__(self) -> str:
        return ",".join(c for c in (self.ai, self.duo) if c)


class PurposeTree:
    def __init__(self, data: dict[str, Any]) -> None:
        self.version: str = data["version"]
        self.purposes = {p["code"]: Purpose(**p) for p in data["purposes"]}
        self.modifiers: dict[str, dict[str, str]] = {m["code"]: m for m in data["modifiers"]}
        for p in self.purposes.values():
            if p.parent is not None and p.parent not in self.purposes:
                raise ValueError(f"purpose {p.code}: unknown parent {p.parent}")

    def _base(self, code: str) -> tuple[Purpose, str | None]:
        base, sep, qualifier = code.partition(":")
        purpose = self.purposes.get(base)
        if purpose is None:
            raise InvalidInput(
                f"unknown purpose {code!r}; see GET /v1/purposes for the codes",
                errors=[{"code": code}],
            )
        if purpose.needs_qualifier and not (sep and QUALIFIER.match(qualifier)):
            raise InvalidInput(f"purpose {base} needs a qualifier, e.g. {base}:C34")
        if not purpose.needs_qualifier and sep:
            raise InvalidInput(f"purpose {base} takes no qualifier")
        return purpose, qualifier or None

    def validate(self, code: str) -> str:
        self._base(code)
        return code

    def branch(self, code: str) -> str:
        return self._base(code)[0].branch

    def path(self, code: str) -> list[str]:
        """``code`` and its ancestors, nearest first (a qualified code before its base's
        parent: ``DS:C34`` → ``DS:C34, HMB, GRU``)."""
        purpose, _ = self._base(code)
        out = [code]
        node = purpose.parent
        while node is not None:
            out.append(node)
            node = self.purposes[node].parent
        return out

    def permit_covers(self, granted: str, wanted: str) -> bool:
        """Does a permit for ``granted`` cover ``wanted``? Explicit-only nodes strictly
        below ``granted`` on the way to ``wanted`` block the cover."""
        path = self.path(wanted)
        if granted not in path:
            return False
        for code in path[: path.index(granted)]:
            if self.purposes[code.partition(":")[0]].explicit_only:
                return False
        return True

    def deny_covers(self, denied: str, wanted: str) -> bool:
        return denied in self.path(wanted)

    def overlaps(self, a: str, b: str) -> bool:
        return a in self.path(b) or b in self.path(a)

    def parse_request(self, text: str) -> Request:
        codes = [c.strip() for c in text.replace(" ", ",").split(",") if c.strip()]
        if not codes:
            raise InvalidInput("purpose is empty; name an AI purpose such as ai.training")
        ai = [c for c in codes if self.branch(c) == "ai"]
        duo = [c for c in codes if self.branch(c) == "duo"]
        if len(ai) > 1 or len(duo) > 1:
            raise InvalidInput(
                "a request names at most one AI purpose and one DUO research category"
            )
        return Request(ai[0] if ai else None, duo[0] if duo else None)

    def validate_modifiers(self, codes: list[str]) -> list[str]:
        unknown = [c for c in codes if c not in self.modifiers]
        if unknown:
            raise InvalidInput(f"unknown modifier(s) {', '.join(unknown)}; see GET /v1/purposes")
        return sorted(set(codes))

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "purposes": [
                {
                    "code": p.code,
                    "parent": p.parent,
                    "branch": p.branch,
                    "label": p.label,
                    "duo": p.duo,
                    "explicit_only": p.explicit_only,
                    "needs_qualifier": p.needs_qualifier,
                }
                for p in self.purposes.values()
            ],
            "modifiers": list(self.modifiers.values()),
        }


@cache
def tree() -> PurposeTree:
    text = resources.files("ledger.consent").joinpath("purposes.json").read_text()
    return PurposeTree(json.loads(text))
