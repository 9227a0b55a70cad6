"""The purpose tree, loaded from the versioned data file beside this module.

Two rules make it more than a tree walk:

* consent to a node covers its descendants, except an ``explicit_only`` node (the
  generative-AI purpose): only a permit naming it, or one of its descendants, covers it;
* a denial covers every descendant, explicit or not (fail closed).

A request names at most one AI purpose and one DUO research category, or one or more
diseases (``ai.training``, ``ai.training,DS:C34``, ``ai.training,DS:C34.1,DS:C50``,
``HMB``); every disease must be covered by a permit and none may match a refusal. ``DS``
always carries a disease qualifier (``DS:<SYSTEM>:<code>``, normalised by
``ledger.consent.diseases``); a disease covers its descendants where a hierarchy is known,
and a refusal of a disease matches its ancestors and descendants (every disease where no
hierarchy is known). What a request asks is
a ``Purpose``: parsed once where the request comes in, passed on typed, and turned back
into that text only where the text is stored, logged or signed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

from ledger.consent import diseases, modifiers
from ledger.errors import InvalidInput

QUALIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")


@dataclass(frozen=True)
class PurposeNode:
    code: str
    parent: str | None
    branch: str  # "ai" or "duo"
    label: str
    duo: str | None = None
    explicit_only: bool = False
    needs_qualifier: bool = False


class PurposeTree:
    def __init__(self, data: dict[str, Any]) -> None:
        self.version: str = data["version"]
        self.purposes = {p["code"]: PurposeNode(**p) for p in data["purposes"]}
        self.modifiers: dict[str, dict[str, str]] = {m["code"]: m for m in data["modifiers"]}
        for p in self.purposes.values():
            if p.parent is not None and p.parent not in self.purposes:
                raise ValueError(f"purpose {p.code}: unknown parent {p.parent}")

    def _base(self, code: str) -> tuple[PurposeNode, str | None]:
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
        """``code`` in its canonical form (a disease qualifier normalised to a CURIE of a
        known code system: ``DS:c34.1`` → ``DS:ICD10CM:C34.1``); an unknown code, or an
        unknown disease code system, is an InvalidInput."""
        _, qualifier = self._base(code)
        if qualifier is None:
            return code
        return f"{code.partition(':')[0]}:{diseases.normalise(qualifier)}"

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
        below ``granted`` on the way to ``wanted`` block the cover. A disease covers its
        descendants (``diseases.permit_covers``)."""
        both = _diseases(granted, wanted)
        if both is not None:
            return diseases.permit_covers(*both)
        path = self.path(wanted)
        if granted not in path:
            return False
        for code in path[: path.index(granted)]:
            if self.purposes[code.partition(":")[0]].explicit_only:
                return False
        return True

    def deny_covers(self, denied: str, wanted: str) -> bool:
        both = _diseases(denied, wanted)
        if both is not None:
            return diseases.deny_matches(*both)
        return denied in self.path(wanted)

    def overlaps(self, a: str, b: str) -> bool:
        """Whether a refusal of one matches a request for the other: ancestor-or-self in
        either direction; two diseases by ``diseases.deny_matches`` (fail closed)."""
        both = _diseases(a, b)
        if both is not None:
            return diseases.deny_matches(*both)
        return a in self.path(b) or b in self.path(a)

    def validate_modifiers(self, codes: list[str]) -> list[str]:
        """The modifiers in their one form, sorted and without repeats: bare codes
        (``NCU``) and valued ones (``MOR:2027-06-30``, ``TS:12M``, ``GS:FR``; syntax in
        ``ledger.consent.modifiers``); an unknown code or a malformed value is an
        InvalidInput."""
        unknown = [c for c in codes if modifiers.base(c.strip().upper()) not in self.modifiers]
        if unknown:
            raise InvalidInput(f"unknown modifier(s) {', '.join(unknown)}; see GET /v1/purposes")
        return sorted({modifiers.canonical(c, self.modifiers) for c in codes})

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
            "disease_systems": [
                {"code": code, "label": label} for code, label in diseases.SYSTEMS.items()
            ],
        }


def _diseases(a: str, b: str) -> tuple[str, str] | None:
    """The two disease qualifiers, where both codes are ``DS:<disease>``."""
    base_a, _, qa = a.partition(":")
    base_b, _, qb = b.partition(":")
    if base_a == base_b == "DS" and qa and qb:
        return qa, qb
    return None


@cache
def tree() -> PurposeTree:
    text = resources.files("ledger.consent").joinpath("purposes.json").read_text()
    return PurposeTree(json.loads(text))


def purpose_text(code: str, category: str | None) -> str:
    """A request's purpose as text from its two fields (``purpose``, ``duo_category``): the
    form stored requests, log entries and grants carry (``ai.training,HMB``)."""
    return f"{code},{category}" if category else code


MAX_DISEASES = 16


@dataclass(frozen=True, slots=True)
class Purpose:
    """What a request asks to do with images: one AI purpose and its DUO research category
    (one category, or one or more diseases), and the flags policies weigh with them
    (commercial use, an IRB reference, the requester's organisation).

    The consent algebra reads the codes; Cedar reads all of it. Equal purposes are equal
    values, so they key caches directly."""

    ai: str | None
    # The DUO research category: empty, one non-disease category (``HMB``), or one or more
    # diseases (``DS:ICD10CM:C34.1``, ...), canonical and sorted, so equal requests are
    # equal values and their text is one text.
    duo: tuple[str, ...] = ()
    commercial: bool = False
    irb_reference: str | None = None
    # The requesting principal's organisation (for_profit, not_for_profit, unknown): what
    # NPU weighs. Not part of the text; unknown counts as for-profit.
    organisation_type: str = "unknown"
    # What the request states, by the modifier that asks it: PUB (publish the results),
    # RTN (return results to the source), COL (a collaborator of the study team named),
    # GSO (a genetic study), CC (clinical care: inference for a patient's care). A
    # consent carrying PUB, RTN, COL or GSO serves only a request that states it; CC on a
    # consent opens ai.inference to a request naming clinical care.
    commitments: frozenset[str] = frozenset()
    # The request's commitment not to publish before this day (what MOR weighs).
    no_publication_before: date | None = None
    # The requester's region (ISO 3166-1 alpha-2; what GS weighs); None is outside every
    # region.
    region: str | None = None
    # Who asks, for US/IS/PS lists: the requesting principal's id and institution, and
    # the project the request names (None is on no list).
    requester: str | None = None
    institution: str | None = None
    project: str | None = None

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        commercial: bool = False,
        irb_reference: str | None = None,
        organisation_type: str = "unknown",
    ) -> Purpose:
        """``ai.training``, ``ai.training,DS:C34``, ``ai.training,DS:C34.1,DS:MONDO:0005061``
        or ``HMB`` (commas or spaces between codes); an unknown or malformed code, two AI
        purposes, two categories, or a category beside diseases is an InvalidInput naming
        it."""
        t = tree()
        codes = [c.strip() for c in text.replace(" ", ",").split(",") if c.strip()]
        if not codes:
            raise InvalidInput("purpose is empty; name an AI purpose such as ai.training")
        ai = [c for c in codes if t.branch(c) == "ai"]
        duo = sorted({t.validate(c) for c in codes if t.branch(c) == "duo"})
        diseases = [c for c in duo if c.startswith("DS:")]
        if len(ai) > 1:
            raise InvalidInput("a request names at most one AI purpose")
        if len(duo) > 1 and len(diseases) != len(duo):
            raise InvalidInput(
                "a request names at most one DUO research category, or one or more "
                "diseases (DS:<SYSTEM>:<code>, each a code of its own)"
            )
        if len(diseases) > MAX_DISEASES:
            raise InvalidInput(f"a request names at most {MAX_DISEASES} diseases")
        return cls(
            t.validate(ai[0]) if ai else None,
            tuple(duo),
            commercial,
            irb_reference,
            organisation_type,
        )

    @classmethod
    def of_fields(
        cls,
        code: str,
        category: str | None,
        *,
        commercial: bool = False,
        irb_reference: str | None = None,
        organisation_type: str = "unknown",
    ) -> Purpose:
        """From a request's ``purpose`` and ``duo_category`` fields, as filed (where
        ``purpose`` may name both, and ``duo_category`` several diseases) or as stored."""
        return cls.parse(
            purpose_text(code, category),
            commercial=commercial,
            irb_reference=irb_reference,
            organisation_type=organisation_type,
        )

    @property
    def text(self) -> str:
        """The codes as one text, AI purpose first, then the category or the diseases in
        order: what is stored, logged and signed."""
        return ",".join(c for c in (self.ai, *self.duo) if c)

    def __str__(self) -> str:
        return self.text

    @property
    def wanted(self) -> tuple[str, ...]:
        """What a consent's DUO categories must cover: the category or every disease the
        request names, else general research use."""
        return self.duo or ("GRU",)

    @property
    def category_text(self) -> str:
        """The DUO part as one text (``HMB``, ``DS:A,DS:B``), empty when none."""
        return ",".join(self.duo)

    @property
    def development(self) -> bool:
        """Whether the AI purpose is ``ai.development`` or below it (what NMDS weighs)."""
        return self.ai is not None and "ai.development" in tree().path(self.ai)

    @property
    def diseases(self) -> tuple[str, ...]:
        """The diseases the request names (``DS:<SYSTEM>:<code>``), sorted."""
        return tuple(c for c in self.duo if c.startswith("DS:"))

    @property
    def code(self) -> str:
        """A stored request's ``purpose``: its AI purpose, or its first DUO code if it names
        no AI purpose."""
        return self.ai or (self.duo[0] if self.duo else "")

    @property
    def category(self) -> str | None:
        """A stored request's ``duo_category``: the DUO codes beside ``code``."""
        rest = self.duo if self.ai else self.duo[1:]
        return ",".join(rest) or None
