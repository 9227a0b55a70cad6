"""DUO modifiers that carry a value: their syntax, validation, and what a request must meet.

A modifier is ``CODE`` or ``CODE:VALUE`` (one per item: a CSV cell separates them with
``;``, FHIR carries one coding per modifier, the JSON API one string per list item). A list
is the modifier repeated (``GS:FR;GS:DE``), so no value holds a separator of its own:

* ``MOR:YYYY-MM-DD``: publication moratorium; the request must commit to publish nothing
  before that date (``no_publication_before`` on or after it), which becomes an
  obligation of the grant.
* ``TS:<n>M`` (1 to 1200 months from the consent's ``valid_from``) or ``TS:YYYY-MM-DD``
  (the last day of use): the consent is no longer in force after it, like ``valid_until``
  (``ledger.consent.in_force``), so release's re-check refuses what it no longer covers.
* ``GS:<region>``: an ISO 3166-1 alpha-2 country (``FR``) or ``EU`` / ``EEA``; the
  requester's principal must be in one of the regions named (a principal with no region
  is outside every one: fail closed).
* ``US:<principal id>``, ``IS:<institution code>``, ``PS:<project code>`` (letters,
  digits, ``.``, ``_``, ``-``; compared without case): the requesting principal, its
  institution (the principal's ``institution``) or the project the request names must be
  one listed; anyone else is refused.

``canonical`` validates one modifier (an InvalidInput, 422, for a malformed value) and
writes it in its one form. ``unmet`` says which valued modifiers of the permits covering
an image a request does not satisfy: the policies refuse on them by name.

Pure module: no database, no web framework.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from ledger.errors import InvalidInput

VALUED = frozenset({"MOR", "TS", "GS", "US", "PS", "IS"})
# US, PS and IS: the list of principals (ids), projects or institutions (codes) allowed.
LISTS = {"US": "principal id", "PS": "project code", "IS": "institution code"}
_LIST_ITEM = re.compile(r"^[A-Z0-9][A-Z0-9._\-]{0,63}$")
MAX_MONTHS = 1200
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTHS = re.compile(r"^(\d{1,4})M$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
# The member states of the European Union (ISO 3166-1 alpha-2).
EU = frozenset(
    "AT BE BG HR CY CZ DK EE FI FR DE GR IE IT LV LT LU MT NL PL PT RO SK SI ES SE".split()  # noqa: SIM905
)
EEA = EU | {"IS", "LI", "NO"}
GROUPS: dict[str, frozenset[str]] = {"EU": EU, "EEA": EEA}


def split(code: str) -> tuple[str, str | None]:
    """``("GS", "FR")`` for ``GS:FR``, ``("NCU", None)`` for ``NCU``."""
    base, sep, value = code.partition(":")
    return base, (value if sep else None)


def base(code: str) -> str:
    return code.partition(":")[0]


def _day(value: str, code: str) -> date:
    try:
        if not _DAY.match(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"modifier {code!r}: the value must be a date, YYYY-MM-DD") from None


def canonical(code: str, known: Iterable[str]) -> str:
    """``code`` validated and written in its one form (upper case, the value checked); an
    unknown code, a value where none is taken, a missing or malformed value is an
    InvalidInput naming the modifier."""
    text = code.strip().upper()
    name, value = split(text)
    if name not in set(known):
        raise InvalidInput(f"unknown modifier {name!r}; see GET /v1/purposes")
    if name not in VALUED:
        if value is not None:
            raise InvalidInput(f"modifier {name} takes no value ({code!r})")
        return name
    if not value:
        example = {
            "MOR": "MOR:2027-06-30",
            "TS": "TS:12M or TS:2027-12-31",
            "GS": "GS:FR",
            "US": "US:<principal id>",
            "PS": "PS:LUNG-SCREENING",
            "IS": "IS:CHU-LYON",
        }
        raise InvalidInput(f"modifier {name} needs a value, e.g. {example[name]}")
    if name == "MOR":
        return f"MOR:{_day(value, code).isoformat()}"
    if name == "TS":
        months = _MONTHS.match(value)
        if months:
            n = int(months.group(1))
            if not 1 <= n <= MAX_MONTHS:
                raise InvalidInput(f"modifier {code!r}: 1 to {MAX_MONTHS} months")
            return f"TS:{n}M"
        if _DAY.match(value):
            return f"TS:{_day(value, code).isoformat()}"
        raise InvalidInput(
            f"modifier {code!r}: TS takes months from the consent (TS:12M) or an end date "
            "(TS:2027-12-31)"
        )
    if name in LISTS:
        if not _LIST_ITEM.match(value):
            raise InvalidInput(
                f"modifier {code!r}: {name} takes a {LISTS[name]} (letters, digits, '.', '_', "
                f"'-'); repeat it for several"
            )
        return f"{name}:{value}"
    if value not in GROUPS and not _COUNTRY.match(value):
        raise InvalidInput(
            f"modifier {code!r}: GS takes an ISO 3166-1 alpha-2 country (GS:FR) or "
            f"{' or '.join(GROUPS)}; repeat it for several regions"
        )
    return f"GS:{value}"


def _in_region(place: str | None, allowed: Iterable[str]) -> bool:
    if place is None:
        return False
    return any(place == a or place in GROUPS.get(a, ()) for a in allowed)


def use_ends(code: str, valid_from: datetime) -> datetime | None:
    """The instant a ``TS`` modifier ends the consent's use (None for other modifiers):
    the end of its day (UTC), or ``valid_from`` plus its months (the day clamped to the
    month's last)."""
    name, value = split(code)
    if name != "TS" or not value:
        return None
    months = _MONTHS.match(value)
    if months is None:
        try:
            last = date.fromisoformat(value)
        except ValueError:  # a malformed stored value: ended (fail closed)
            return valid_from
        return datetime.combine(last + timedelta(days=1), time(), tzinfo=UTC)
    total = valid_from.month - 1 + int(months.group(1))
    year, month = valid_from.year + total // 12, total % 12 + 1
    day = min(valid_from.day, calendar.monthrange(year, month)[1])
    return valid_from.replace(year=year, month=month, day=day)


def unmet(
    modifiers: Iterable[str],
    *,
    no_publication_before: date | None,
    region: str | None,
    requester: str | None = None,
    institution: str | None = None,
    project: str | None = None,
) -> tuple[str, ...]:
    """The valued modifiers (by code, sorted) a request does not meet: ``MOR`` when the
    request's commitment not to publish ends before a moratorium (or is absent), ``GS``
    when the requester's region is in none of the regions named, ``US``/``IS``/``PS`` when
    the requester, its institution or the request's project is not listed. A valued
    modifier stored without its value is never met (fail closed)."""
    out: set[str] = set()
    allowed: dict[str, list[str]] = {"GS": [], "US": [], "IS": [], "PS": []}
    for code in modifiers:
        name, value = split(code)
        if name == "MOR":
            if not value or no_publication_before is None:
                out.add("MOR")
                continue
            try:
                if no_publication_before < date.fromisoformat(value):
                    out.add("MOR")
            except ValueError:
                out.add("MOR")
        elif name in allowed:
            if value:
                allowed[name].append(value.upper())
            else:
                out.add(name)
    if allowed["GS"] and not _in_region(region, allowed["GS"]):
        out.add("GS")
    for name, who in (("US", requester), ("IS", institution), ("PS", project)):
        if allowed[name] and (who is None or who.upper() not in allowed[name]):
            out.add(name)
    return tuple(sorted(out))


def moratorium(modifiers: Iterable[str]) -> date | None:
    """The latest ``MOR`` date among ``modifiers``, if any."""
    days = []
    for code in modifiers:
        name, value = split(code)
        if name == "MOR" and value:
            try:
                days.append(date.fromisoformat(value))
            except ValueError:
                continue
    return max(days, default=None)
