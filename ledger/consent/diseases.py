"""Disease qualifiers of ``DS``: canonical codes in a named code system, with a hierarchy.

A qualifier is a CURIE, ``<SYSTEM>:<code>``, normalised on input:

* ``ICD10CM``: ICD-10-CM, hierarchy from ``simple-icd-10-cm`` (the tabular list ships
  inside that package; nothing is downloaded). A bare code (``C34.1``, ``c341``) is read as
  ICD-10-CM, so consents written before code systems were named keep their meaning.
* ``MONDO`` and ``DOID``: hierarchy from an OBO file an administrator provides
  (``LEDGER_DISEASE_ONTOLOGY=/path/file.obo``; its ``[Term]`` ``id:`` and ``is_a:`` lines).
  ``MONDO_0004992`` and lower case are normalised to ``MONDO:0004992``.

An unknown system is an InvalidInput (422). The DUOS rules, applied by ``permit_covers`` and
``deny_matches``: a permit covers a request for its disease or any descendant; a refusal
matches when either disease is an ancestor-or-self of the other. Where no hierarchy is known
for the codes involved (a code the hierarchy does not hold, no ontology file, two systems), a
refusal matches every disease request (fail closed) and a permit covers only the same code.
"""

from __future__ import annotations

import os
import re
import warnings
from functools import cache
from pathlib import Path
from typing import Any

from ledger.errors import InvalidInput

ICD10CM = "ICD10CM"
SYSTEMS: dict[str, str] = {
    "ICD10CM": "ICD-10-CM (hierarchy from simple-icd-10-cm, 2026 tabular list)",
    "MONDO": "Mondo Disease Ontology (hierarchy from LEDGER_DISEASE_ONTOLOGY)",
    "DOID": "Human Disease Ontology (hierarchy from LEDGER_DISEASE_ONTOLOGY)",
}
ONTOLOGY_ENV = "LEDGER_DISEASE_ONTOLOGY"

_CURIE = re.compile(r"^([A-Za-z][A-Za-z0-9]*)[:_]([A-Za-z0-9.\-]+)$")
_ICD = re.compile(r"^[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$|^[A-Z][0-9]{2}-[A-Z][0-9]{2}$")


def _icd(code: str) -> str:
    code = code.upper()
    if "-" not in code and "." not in code and len(code) > 3:
        code = f"{code[:3]}.{code[3:]}"
    return code


def normalise(qualifier: str) -> str:
    """The canonical CURIE of a disease qualifier (``c34.1`` → ``ICD10CM:C34.1``); an
    unknown code system is an InvalidInput."""
    q = qualifier.strip()
    if _ICD.match(q.upper()):
        return f"{ICD10CM}:{_icd(q)}"
    m = _CURIE.match(q)
    if m is None:
        raise InvalidInput(
            f"disease {qualifier!r} is not a code of a known system; write "
            f"<SYSTEM>:<code> with SYSTEM one of {', '.join(SYSTEMS)}"
        )
    system, code = m.group(1).upper(), m.group(2)
    if system in ("ICD10CM", "ICD10"):
        return f"{ICD10CM}:{_icd(code)}"
    if system not in SYSTEMS:
        raise InvalidInput(
            f"unknown disease code system {m.group(1)!r} in {qualifier!r}; "
            f"known: {', '.join(SYSTEMS)}"
        )
    return f"{system}:{code.upper()}"


@cache
def _icd_module() -> Any:
    try:
        with warnings.catch_warnings():  # it reads its data with deprecated importlib calls
            warnings.simplefilter("ignore", DeprecationWarning)
            import simple_icd_10_cm  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    return simple_icd_10_cm


@cache
def _ontology(path: str | None) -> dict[str, tuple[str, ...]]:
    """Term → its direct parents (``is_a``), from an OBO file's ``[Term]`` stanzas."""
    return _read_obo(path)[0]


@cache
def _names(path: str | None) -> dict[str, str]:
    """Term → its ``name:``, from the same file (what the console shows beside a code)."""
    return _read_obo(path)[1]


@cache
def _read_obo(path: str | None) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    if not path:
        return {}, {}
    parents: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    current: str | None = None
    in_term = False
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("["):
            in_term, current = line == "[Term]", None
            continue
        if not in_term or ":" not in line:
            continue
        tag, _, value = line.partition(":")
        value = value.split("!")[0].strip()
        if tag == "id":
            try:
                current = normalise(value)
            except InvalidInput:
                current = None
            if current is not None:
                parents.setdefault(current, [])
        elif tag == "name" and current is not None:
            names.setdefault(current, value)
        elif tag == "is_a" and current is not None:
            try:
                parents[current].append(normalise(value.split()[0]))
            except InvalidInput:
                continue
    return {k: tuple(v) for k, v in parents.items()}, names


def ontology_path() -> str | None:
    return os.environ.get(ONTOLOGY_ENV) or None


@cache
def _ancestors(code: str, path: str | None) -> frozenset[str] | None:
    """Strict ancestors of a canonical code, or None where no hierarchy holds it."""
    system, _, local = code.partition(":")
    if system == ICD10CM:
        icd = _icd_module()
        if icd is None or not icd.is_valid_item(local):
            return None
        return frozenset(f"{ICD10CM}:{a}" for a in icd.get_ancestors(local))
    graph = _ontology(path)
    if code not in graph:
        return None
    seen: set[str] = set()
    todo = list(graph[code])
    while todo:
        parent = todo.pop()
        if parent not in seen:
            seen.add(parent)
            todo.extend(graph.get(parent, ()))
    return frozenset(seen)


def lenient(qualifier: str) -> str:
    """``normalise``, or the qualifier as stored where it cannot be (a code kept from before
    systems were named: it has no known hierarchy, so it fails closed)."""
    try:
        return normalise(qualifier)
    except InvalidInput:
        return qualifier


def ancestors(code: str) -> frozenset[str] | None:
    return _ancestors(lenient(code), ontology_path())


def known(code: str) -> bool:
    """Whether a hierarchy holds this code."""
    return ancestors(code) is not None


def permit_covers(granted: str, wanted: str) -> bool:
    """A permit for disease ``granted`` covers a request for ``wanted``: the same code, or an
    ancestor of it in a known hierarchy."""
    g, w = lenient(granted), lenient(wanted)
    if g == w:
        return True
    up = ancestors(w)
    return up is not None and known(g) and g in up


def deny_matches(denied: str, wanted: str) -> bool:
    """A refusal of ``denied`` matches a request for ``wanted``: either is an
    ancestor-or-self of the other; where no hierarchy holds both, always (fail closed)."""
    d, w = lenient(denied), lenient(wanted)
    if d == w:
        return True
    up_d, up_w = ancestors(d), ancestors(w)
    if up_d is None or up_w is None or d.partition(":")[0] != w.partition(":")[0]:
        return True
    return d in up_w or w in up_d


def clear_caches() -> None:
    """Forget loaded hierarchies (after ``LEDGER_DISEASE_ONTOLOGY`` changes)."""
    _read_obo.cache_clear()
    _ontology.cache_clear()
    _names.cache_clear()
    _ancestors.cache_clear()


def label(code: str) -> str | None:
    """The name of a disease where its hierarchy knows it (ICD-10-CM's description, the OBO
    file's ``name:``), else None: shown beside the code, never compared."""
    canonical = lenient(code)
    system, _, local = canonical.partition(":")
    if system == ICD10CM:
        icd = _icd_module()
        if icd is None or not icd.is_valid_item(local):
            return None
        return str(icd.get_description(local))
    return _names(ontology_path()).get(canonical)


_OBO_LOCAL = re.compile(r"^(?:([A-Za-z]+)[:_])?([0-9]{1,10})$")


def from_system(system: str, code: str) -> str:
    """The canonical CURIE of ``code`` given in code system ``system`` (a key of
    ``SYSTEMS``), as FHIR codings carry them: ICD-10-CM ``C34.1`` (or ``C341``); MONDO and
    DOID ``MONDO:0004992``, ``MONDO_0004992`` or the bare ``0004992``. A code whose shape
    does not fit its system (or names another system) is an InvalidInput."""
    text = code.strip()
    if system == ICD10CM:
        if not _ICD.match(text.upper()):
            raise InvalidInput(f"{code!r} is not an ICD-10-CM code (e.g. C34.1)")
        return f"{ICD10CM}:{_icd(text)}"
    if system not in SYSTEMS:
        raise InvalidInput(f"unknown disease code system {system!r}; known: {', '.join(SYSTEMS)}")
    m = _OBO_LOCAL.match(text)
    if m is None or (m.group(1) is not None and m.group(1).upper() != system):
        raise InvalidInput(f"{code!r} is not a {system} code (e.g. {system}:0004992)")
    return f"{system}:{m.group(2)}"
