"""Conformance with the DUOS matcher (DataBiosphere/consent-ontology), table-driven.

Each case is a DUOS rule as documented for the matcher (``DataUseMatcherV4Test``,
``V3Test``, ``DataUseMatcherTest`` exercise these rules; the cases here are written from the
rules, not copied from those files, so each says "DUOS rule as documented" rather than a file
and line). A DUOS dataset's data use becomes a consent; a DUOS research purpose becomes an
access request. Because the ledger's consents are about AI use, every consent here also
permits ``ai`` and every request names ``ai.training`` (or ``ai.development``) beside its
DUO category, except in the rows that show the deliberate differences (``DIFFERENCES``,
listed in the README, "Where the ledger differs from DUOS").

Both answers sit side by side: ``duos`` is the reference, ``ledger`` what the ledger does;
a row where they differ must say why.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.access.decision import Classifier, decide_classes
from ledger.consent import diseases, facts
from ledger.consent.facts import ConsentFact, ScopeFact
from ledger.consent.purposes import Purpose, tree
from ledger.policy.engine import PolicySet, default_directory, load

DOCUMENTED = "DUOS rule as documented"

# cancer ⊃ intestinal cancer ⊃ colon cancer; asthma elsewhere (a tiny DOID-shaped file).
OBO = """format-version: 1.2

[Term]
id: DOID:4
name: disease

[Term]
id: DOID:162
name: cancer
is_a: DOID:4

[Term]
id: DOID:10155
name: intestinal cancer
is_a: DOID:162

[Term]
id: DOID:219
name: colon cancer
is_a: DOID:10155

[Term]
id: DOID:2841
name: asthma
is_a: DOID:4
"""
CANCER, INTESTINAL, ASTHMA = "DS:DOID:162", "DS:DOID:10155", "DS:DOID:2841"


@dataclass(frozen=True)
class Case:
    name: str
    consent: tuple[str, ...]  # the dataset's data use as consent purposes
    modifiers: tuple[str, ...]
    request: str  # the research purpose as a request
    duos: bool  # the DUOS matcher's answer: approve (True) or deny (False)
    ledger: bool  # the ledger's answer
    commercial: bool = False
    organisation: str = "not_for_profit"
    irb: str | None = None
    why: str = ""  # required where duos != ledger
    source: str = DOCUMENTED


CASES = [
    Case("GRU dataset, GRU request", ("ai", "GRU"), (), "ai.training,GRU", True, True),
    Case("GRU dataset, HMB request", ("ai", "GRU"), (), "ai.training,HMB", True, True),
    Case("GRU dataset, DS request", ("ai", "GRU"), (), f"ai.training,{CANCER}", True, True),
    Case("GRU dataset, POA request", ("ai", "GRU"), (), "ai.training,POA", True, True),
    Case("HMB dataset, HMB request", ("ai", "HMB"), (), "ai.training,HMB", True, True),
    Case("HMB dataset, GRU request", ("ai", "HMB"), (), "ai.training,GRU", False, False),
    Case("HMB dataset, POA request", ("ai", "HMB"), (), "ai.training,POA", False, False),
    Case("HMB dataset, DS request", ("ai", "HMB"), (), f"ai.training,{CANCER}", True, True),
    Case(
        "DS(cancer) dataset, DS(cancer) request",
        ("ai", CANCER),
        (),
        f"ai.training,{CANCER}",
        True,
        True,
    ),
    Case(
        "DS(cancer) dataset, DS(intestinal cancer) request",
        ("ai", CANCER),
        (),
        f"ai.training,{INTESTINAL}",
        True,
        True,
    ),
    Case(
        "DS(cancer) dataset, DS(colon cancer) request (two levels down)",
        ("ai", CANCER),
        (),
        "ai.training,DS:DOID:219",
        True,
        True,
    ),
    Case(
        "DS(intestinal cancer) dataset, DS(cancer) request",
        ("ai", INTESTINAL),
        (),
        f"ai.training,{CANCER}",
        False,
        False,
    ),
    Case(
        "DS(cancer) dataset, DS(asthma) request",
        ("ai", CANCER),
        (),
        f"ai.training,{ASTHMA}",
        False,
        False,
    ),
    Case("DS(cancer) dataset, HMB request", ("ai", CANCER), (), "ai.training,HMB", False, False),
    Case("DS(cancer) dataset, GRU request", ("ai", CANCER), (), "ai.training,GRU", False, False),
    Case("DS(cancer) dataset, POA request", ("ai", CANCER), (), "ai.training,POA", False, False),
    Case("POA dataset, POA request", ("ai", "POA"), (), "ai.training,POA", True, True),
    Case("POA dataset, HMB request", ("ai", "POA"), (), "ai.training,HMB", False, False),
    Case(
        "NMDS dataset, methods research without a disease",
        ("ai", "HMB"),
        ("NMDS",),
        "ai.development,HMB",
        False,
        False,
    ),
    Case(
        "NMDS dataset, methods research for a covered disease",
        ("ai", "HMB"),
        ("NMDS",),
        f"ai.development,{CANCER}",
        True,
        True,
    ),
    Case(
        "NMDS + DS(cancer) dataset, methods research for intestinal cancer",
        ("ai", CANCER),
        ("NMDS",),
        f"ai.training,{INTESTINAL}",
        True,
        True,
    ),
    Case(
        "NMDS + DS(cancer) dataset, methods research for asthma",
        ("ai", CANCER),
        ("NMDS",),
        f"ai.training,{ASTHMA}",
        False,
        False,
    ),
    Case(
        "NPU dataset, for-profit requester",
        ("ai", "GRU"),
        ("NPU",),
        "ai.training,HMB",
        False,
        False,
        organisation="for_profit",
    ),
    Case(
        "NPU dataset, not-for-profit requester",
        ("ai", "GRU"),
        ("NPU",),
        "ai.training,HMB",
        True,
        True,
    ),
    Case(
        "NCU dataset, commercial request",
        ("ai", "GRU"),
        ("NCU",),
        "ai.training,HMB",
        False,
        False,
        commercial=True,
    ),
    Case(
        "NCU dataset, non-commercial request from a for-profit",
        ("ai", "GRU"),
        ("NCU",),
        "ai.training,HMB",
        True,
        True,
        organisation="for_profit",
    ),
    Case(
        "IRB dataset, request with an ethics approval",
        ("ai", "GRU"),
        ("IRB",),
        "ai.training,HMB",
        True,
        True,
        irb="IRB-2026-1",
    ),
    Case(
        "IRB dataset, request without an ethics approval",
        ("ai", "GRU"),
        ("IRB",),
        "ai.training,HMB",
        False,
        False,
    ),
    # Several diseases in one research purpose: the dataset must match ALL of them (DUOS
    # matches every condition a purpose states; Algorithms.md, version 2).
    Case(
        "DS(cancer) dataset, request for intestinal cancer and colon cancer",
        ("ai", CANCER),
        (),
        f"ai.training,{INTESTINAL},DS:DOID:219",
        True,
        True,
    ),
    Case(
        "DS(cancer) dataset, request for intestinal cancer and asthma",
        ("ai", CANCER),
        (),
        f"ai.training,{INTESTINAL},{ASTHMA}",
        False,
        False,
    ),
    Case(
        "HMB dataset, request for cancer and asthma",
        ("ai", "HMB"),
        (),
        f"ai.training,{CANCER},{ASTHMA}",
        True,
        True,
    ),
    # The deliberate differences (README, "Where the ledger differs from DUOS").
    Case(
        "GRU dataset without an AI purpose, AI request",
        ("GRU",),
        (),
        "ai.training,HMB",
        True,
        False,
        why="fail closed: a broad research consent does not cover AI use unless the "
        "optional legacy-research policy says so",
    ),
    Case(
        "HMB dataset without an AI purpose, AI request",
        ("HMB",),
        (),
        "ai.training,HMB",
        True,
        False,
        why="fail closed: as above",
    ),
    Case(
        "DS(cancer) dataset, AI request naming no DUO category",
        ("ai", CANCER),
        (),
        "ai.training",
        True,
        False,
        why="fail closed: an AI request must name the DUO category a consent is limited to",
    ),
    Case(
        "DS(cancer) dataset, DS request in another code system",
        ("ai", CANCER),
        (),
        "ai.training,DS:ICD10CM:C18",
        True,
        False,
        why="no cross-walk between code systems: a permit covers only codes of its own hierarchy",
    ),
    Case(
        "NPU dataset, requester of unknown organisation",
        ("ai", "GRU"),
        ("NPU",),
        "ai.training,HMB",
        True,
        False,
        organisation="unknown",
        why="fail closed: an organisation not recorded as not-for-profit counts as for-profit",
    ),
]


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    return load(default_directory())


@pytest.fixture(autouse=True)
def ontology(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    path = tmp_path / "doid-mini.obo"
    path.write_text(OBO)
    monkeypatch.setenv(diseases.ONTOLOGY_ENV, str(path))
    _clear()
    yield
    monkeypatch.delenv(diseases.ONTOLOGY_ENV)
    _clear()


def _clear() -> None:
    diseases.clear_caches()
    facts.permit_covers.cache_clear()
    facts.deny_matches.cache_clear()
    facts.legacy_covers.cache_clear()


def ledger_answer(policies: PolicySet, case: Case) -> bool:
    t = tree()
    purposes = tuple(t.validate(p) for p in case.consent)
    fact = ConsentFact("c", 1, "s", "permit", purposes, case.modifiers, ScopeFact(), 1)
    purpose = Purpose.parse(
        case.request,
        commercial=case.commercial,
        irb_reference=case.irb,
        organisation_type=case.organisation,
    )
    classifier = Classifier(purpose)
    index = classifier.class_of(classifier.signature([fact]), "CT", "CHEST", None, "NO")
    return decide_classes(policies, purpose, classifier.keys)[index].eligible


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_duos_matcher_cases(policies: PolicySet, case: Case) -> None:
    assert ledger_answer(policies, case) == case.ledger
    assert (case.duos == case.ledger) or case.why, "a difference must say why"


def test_the_table_counts() -> None:
    agree = [c for c in CASES if c.duos == c.ledger]
    differ = [c for c in CASES if c.duos != c.ledger]
    assert (len(agree), len(differ)) == (31, 5)


def test_the_readme_gives_the_table_counts() -> None:
    """The README's section on the differences states the counts this table has."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    agree = sum(c.duos == c.ledger for c in CASES)
    stated = f"{len(CASES)} cases, {agree} agree and {len(CASES) - agree} differ on purpose"
    assert stated in " ".join(readme.split())
