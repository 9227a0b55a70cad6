"""Conformance with the DUOS matcher (DataBiosphere/consent-ontology), table-driven.

The rows port the matcher's own tests: ``DataUseMatcherV4Test`` and ``DataUseMatcherV3Test``
as of the repository's main line at e371cba (2024-10-22), and ``DataUseMatcherTest`` (the
version 2 matcher) as it last stood at 5e30308, before 8f6bded (2024-04-22) removed it (a
branch never merged, 03ad637, adds two V3 methods, ``testCommercial_abstain_case_1`` and
``_2``: not counted). ``METHODS`` names every test method of the three files; each is either
named in the ``sources`` of the one row that ports it or set aside in ``NOT_EXPRESSIBLE``
with its reason, so the counts can be checked against the files. A few more rows
(``DOCUMENTED``) come from the rules in DUOS's ``docs/Algorithms.md`` where no test method
exercises them (several diseases, NMDS with a disease, IRB, codes of another system,
consents without an AI code).

How a test becomes a row: a DUOS dataset's data use becomes a consent (``generalUse`` is
``GRU``, ``hmbResearch`` ``HMB``, a disease restriction ``DS:DOID:<id>``,
``populationOriginsAncestry`` ``POA``, ``nonProfitUse`` true ``NPU``, ``commercialUse``
false ``NCU``, the version 2 dataset's ``methodsResearch`` ``NMDS``; a dataset naming no
research category names none); a DUOS research purpose becomes an access request
(``hmbResearch`` is ``ai.training,HMB`` and so on, ``methodsResearch`` alone is
``ai.development`` with no category, ``nonProfitUse`` true or false the requester's
organisation, ``commercialUse`` the commercial flag, the sensitive-research flags the
request's ``sensitive_research``). Because the ledger's consents are about AI use, every
consent also permits ``ai`` and every request names an AI purpose, except in the rows that
show that difference.

DUOS answers approve, deny or abstain (no automatic decision: a person decides; the
version 2 matcher answered positive or negative, read as approve or deny). The
ledger's answer is read the same way: deny when the image is not eligible, abstain when it
is but a steward must decide whatever the policies say (``conditions.needs_a_person``),
approve otherwise. Both answers sit side by side (``duos`` from the test's assertion,
``ledger`` what the ledger does); a row where they differ says why (the README lists them,
"Where the ledger differs from DUOS"). A row where the ledger would permit what DUOS denies
must be marked ``open`` (a question for a decision, not a settled difference); none is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.access import conditions
from ledger.access.decision import Classifier, decide_classes
from ledger.consent import diseases, facts
from ledger.consent.facts import ConsentFact, ScopeFact
from ledger.consent.purposes import Purpose, tree
from ledger.policy.engine import PolicySet, default_directory, load

DOCUMENTED = "DUOS rule as documented (docs/Algorithms.md; no test method)"
V4, V3, V2 = "DataUseMatcherV4Test", "DataUseMatcherV3Test", "DataUseMatcherTest"
APPROVE, DENY, ABSTAIN = "approve", "deny", "abstain"
RANK = {DENY: 0, ABSTAIN: 1, APPROVE: 2}  # how much each answer allows

# The purpose flags on which DUOS abstains, by the suffix of their test method, and the
# ledger's sensitive-research flag for each (None: the ledger has no such flag).
ABSTAIN_FLAGS: dict[str, str | None] = {
    "population": "population_structure",
    "gender": "one_sex_only",
    "pediatric": "pediatric",
    "vulnerablePopulations": "vulnerable_population",
    "illegalBehavior": "illegal_behaviour",
    "sexualDiseases": "sexual_diseases",
    "psychologicalTraits": "psychological_traits",
    "notHealth": "not_health",
    "stigmatizedDiseases": "stigmatised_diseases",
    "controls": None,
}

_SHARED = (
    "testDiseaseMatching_positive",
    "testDiseaseMatching_negative",
    "testHMB_positive_case_1",
    "testHMB_positive_case_2",
    "testHMB_negative_case_1",
    "testHMB_negative_case_2",
    "testHMB_negative_case_3",
    "testPOA_positive_case_1",
    "testPOA_positive_case_2",
    "testPOA_negative_case_1",
    "testPOA_negative_case_2",
    "testMDS_positive_case_1",
    "testMDS_positive_case_2",
    "testMDS_positive_case_3",
    "testMDS_positive_case_4",
)
_ABSTAIN = (
    "testAbstainDecision_COL",
    "testAbstainDecision_Other",
    "testAbstainDecision_SecondaryOther",
    "testAbstainDecision_ethicsApprovalRequired",
    *(f"testAbstainDecision_{flag}" for flag in ABSTAIN_FLAGS),
)
# Every test method of the three files, in no particular order.
METHODS: dict[str, tuple[str, ...]] = {
    V4: (
        *_SHARED,
        "testNPU_positive_case_1",
        "testNPU_positive_case_2",
        "testNPU_positive_case_3",
        "testNPU_negative_case_1",
        *_ABSTAIN,
    ),
    V3: (
        *_SHARED,
        "testCommercial_positive_case_1",
        "testCommercial_positive_case_2",
        "testCommercial_negative_case_1",
        "testCommercial_negative_case_2",
        *_ABSTAIN,
    ),
    V2: (
        "testDiseaseMatching_positive",
        "testDiseaseMatching_negative",
        "testDiseaseMatching_noPurposeDiseases",
        "testHMB_positive",
        "testHMB_negative",
        "testNMDS_positive_case_1",
        "testNMDS_negative_case_1",
        "testNAGR_positive",
        "testNAGR_negative",
        "testPOA_positive",
        "testPOA_negative",
        "testCommercial_positive_1",
        "testCommercial_positive_2",
        "testCommercial_negative",
        "testPediatric_positive_1",
        "testPediatric_positive_2",
        "testPediatric_positive_3",
        "testPediatric_negative_1",
        "testGenderMatch_positive_1",
        "testGenderMatch_positive_2",
        "testGenderMatch_negative_1",
    ),
}

_FREE_TEXT = "a research purpose given only as free text: a request states its purpose as codes"
_NAGR = "aggregate-level research (NAGR): no consent modifier or request field says it"
_DATASET_LIMIT = (
    "a dataset limited to {what}: a consent has no such limit (RS only sends such "
    "research to a steward)"
)
# The reference methods judged not expressible in the ledger, each with its reason.
NOT_EXPRESSIBLE: dict[str, str] = {
    **{
        f"{f}.{m}": reason
        for f in (V4, V3)
        for m, reason in (
            ("testAbstainDecision_Other", _FREE_TEXT),
            ("testAbstainDecision_SecondaryOther", _FREE_TEXT),
            (
                "testAbstainDecision_controls",
                "use as controls: no request field or sensitive-research flag says it",
            ),
        )
    },
    f"{V2}.testNAGR_positive": _NAGR,
    f"{V2}.testNAGR_negative": _NAGR,
    f"{V2}.testPediatric_positive_1": _DATASET_LIMIT.format(what="pediatric research"),
    f"{V2}.testPediatric_negative_1": _DATASET_LIMIT.format(what="pediatric research"),
    f"{V2}.testGenderMatch_negative_1": _DATASET_LIMIT.format(what="one sex"),
}

# The terms the reference tests name, with the parents their mocked ontology look-ups
# return (intestinal cancer's ancestors: gastrointestinal system cancer, organ system
# cancer, cancer, disease of cellular proliferation, disease), and the few more the
# documented rows use (colon cancer under colorectal cancer; asthma, whose real ancestors
# between it and disease are left out).
OBO = """format-version: 1.2

[Term]
id: DOID:4
name: disease

[Term]
id: DOID:14566
name: disease of cellular proliferation
is_a: DOID:4

[Term]
id: DOID:162
name: cancer
is_a: DOID:14566

[Term]
id: DOID:0050686
name: organ system cancer
is_a: DOID:162

[Term]
id: DOID:3119
name: gastrointestinal system cancer
is_a: DOID:0050686

[Term]
id: DOID:10155
name: intestinal cancer
is_a: DOID:3119

[Term]
id: DOID:9256
name: colorectal cancer
is_a: DOID:10155

[Term]
id: DOID:219
name: colon cancer
is_a: DOID:9256

[Term]
id: DOID:2841
name: asthma
is_a: DOID:4
"""
CANCER, INTESTINAL, COLON, ASTHMA = "DS:DOID:162", "DS:DOID:10155", "DS:DOID:219", "DS:DOID:2841"


def both(method: str) -> tuple[str, ...]:
    """The method of that name in the V4 and the V3 test (their shared cases)."""
    return (f"{V4}.{method}", f"{V3}.{method}")


@dataclass(frozen=True)
class Case:
    name: str
    consent: tuple[str, ...]  # the dataset's data use as consent purposes
    modifiers: tuple[str, ...]
    request: str  # the research purpose as a request
    duos: str  # the DUOS matcher's answer: approve, deny or abstain
    ledger: str  # the ledger's answer, read the same way
    sources: tuple[str, ...] = (DOCUMENTED,)  # the reference test methods it ports
    commercial: bool = False
    organisation: str = "not_for_profit"
    irb: str | None = None
    commitments: frozenset[str] = frozenset()
    sensitive: tuple[str, ...] = ()
    why: str = ""  # required where duos != ledger
    open: bool = False  # the ledger permits what DUOS denies: awaiting a decision


NO_CATEGORY = (
    "fail closed: an AI request must name the DUO category a consent is limited to (DUOS "
    "approves methods research on any dataset without NMDS)"
)
SENSITIVE = [
    Case(
        f"HMB dataset, HMB request flagged {flag}",
        ("ai", "HMB"),
        (),
        "ai.training,HMB",
        ABSTAIN,
        ABSTAIN,
        both(f"testAbstainDecision_{method}"),
        sensitive=(flag,),
    )
    for method, flag in ABSTAIN_FLAGS.items()
    if flag is not None
]

CASES = [
    # Disease hierarchy (all three files).
    Case(
        "DS(cancer) dataset, DS(intestinal cancer) request",
        ("ai", CANCER),
        (),
        f"ai.training,{INTESTINAL}",
        APPROVE,
        APPROVE,
        (*both("testDiseaseMatching_positive"), f"{V2}.testDiseaseMatching_positive"),
    ),
    Case(
        "DS(intestinal cancer) dataset, DS(cancer) request",
        ("ai", INTESTINAL),
        (),
        f"ai.training,{CANCER}",
        DENY,
        DENY,
        (*both("testDiseaseMatching_negative"), f"{V2}.testDiseaseMatching_negative"),
    ),
    Case(
        "DS(cancer) dataset, request naming no research category",
        ("ai", CANCER),
        (),
        "ai.training",
        DENY,
        DENY,
        (f"{V2}.testDiseaseMatching_noPurposeDiseases",),
    ),
    # HMB.
    Case(
        "GRU dataset, HMB request",
        ("ai", "GRU"),
        (),
        "ai.training,HMB",
        APPROVE,
        APPROVE,
        (*both("testHMB_positive_case_1"), f"{V2}.testHMB_positive"),
    ),
    Case(
        "HMB dataset, HMB request",
        ("ai", "HMB"),
        (),
        "ai.training,HMB",
        APPROVE,
        APPROVE,
        both("testHMB_positive_case_2"),
    ),
    Case(
        "HMB dataset, GRU request",
        ("ai", "HMB"),
        (),
        "ai.training,GRU",
        DENY,
        DENY,
        (*both("testHMB_negative_case_1"), f"{V2}.testHMB_negative"),
    ),
    Case(
        "DS(cancer) dataset, HMB request",
        ("ai", CANCER),
        (),
        "ai.training,HMB",
        DENY,
        DENY,
        both("testHMB_negative_case_2"),
    ),
    Case(
        "POA dataset, HMB request",
        ("ai", "POA"),
        (),
        "ai.training,HMB",
        DENY,
        DENY,
        both("testHMB_negative_case_3"),
    ),
    # POA.
    Case(
        "GRU dataset, POA request",
        ("ai", "GRU"),
        (),
        "ai.training,POA",
        APPROVE,
        APPROVE,
        (*both("testPOA_positive_case_1"), f"{V2}.testPOA_positive"),
    ),
    Case(
        "POA dataset, POA request",
        ("ai", "POA"),
        (),
        "ai.training,POA",
        APPROVE,
        APPROVE,
        both("testPOA_positive_case_2"),
    ),
    Case(
        "HMB dataset, POA request",
        ("ai", "HMB"),
        (),
        "ai.training,POA",
        DENY,
        DENY,
        (*both("testPOA_negative_case_1"), f"{V2}.testPOA_negative"),
    ),
    Case(
        "DS(cancer) dataset, POA request",
        ("ai", CANCER),
        (),
        "ai.training,POA",
        DENY,
        DENY,
        both("testPOA_negative_case_2"),
    ),
    # Methods research (MDS; NMDS in the version 2 matcher).
    Case(
        "GRU dataset, methods research",
        ("ai", "GRU"),
        (),
        "ai.development",
        APPROVE,
        APPROVE,
        (*both("testMDS_positive_case_1"), f"{V2}.testNMDS_positive_case_1"),
    ),
    Case(
        "POA dataset, methods research naming no category",
        ("ai", "POA"),
        (),
        "ai.development",
        APPROVE,
        DENY,
        both("testMDS_positive_case_2"),
        why=NO_CATEGORY,
    ),
    Case(
        "DS(cancer) dataset, methods research naming no category",
        ("ai", CANCER),
        (),
        "ai.development",
        APPROVE,
        DENY,
        both("testMDS_positive_case_3"),
        why=NO_CATEGORY,
    ),
    Case(
        "HMB dataset, methods research naming no category",
        ("ai", "HMB"),
        (),
        "ai.development",
        APPROVE,
        DENY,
        both("testMDS_positive_case_4"),
        why=NO_CATEGORY,
    ),
    Case(
        "NMDS dataset naming no category, methods research for cancer",
        ("ai",),
        ("NMDS",),
        f"ai.development,{CANCER}",
        DENY,
        DENY,
        (f"{V2}.testNMDS_negative_case_1",),
    ),
    # Non-profit use (V4) and commercial use (V3, version 2).
    Case(
        "NPU dataset, not-for-profit requester",
        ("ai",),
        ("NPU",),
        "ai.training",
        APPROVE,
        APPROVE,
        (f"{V4}.testNPU_positive_case_1",),
    ),
    Case(
        "dataset without NPU, for-profit requester",
        ("ai",),
        (),
        "ai.training",
        APPROVE,
        APPROVE,
        (f"{V4}.testNPU_positive_case_2",),
        organisation="for_profit",
    ),
    Case(
        "dataset without NPU, not-for-profit requester",
        ("ai",),
        (),
        "ai.training",
        APPROVE,
        APPROVE,
        (f"{V4}.testNPU_positive_case_3",),
    ),
    Case(
        "NPU dataset, for-profit requester",
        ("ai",),
        ("NPU",),
        "ai.training",
        DENY,
        DENY,
        (f"{V4}.testNPU_negative_case_1",),
        organisation="for_profit",
    ),
    Case(
        "dataset allowing commercial use, commercial request",
        ("ai",),
        (),
        "ai.training",
        APPROVE,
        APPROVE,
        (f"{V3}.testCommercial_positive_case_1", f"{V2}.testCommercial_positive_1"),
        commercial=True,
    ),
    Case(
        "GRU dataset, commercial request",
        ("ai", "GRU"),
        (),
        "ai.training",
        APPROVE,
        APPROVE,
        (f"{V3}.testCommercial_positive_case_2", f"{V2}.testCommercial_positive_2"),
        commercial=True,
    ),
    Case(
        "NPU dataset, commercial request",
        ("ai",),
        ("NPU",),
        "ai.training",
        DENY,
        DENY,
        (f"{V3}.testCommercial_negative_case_1",),
        commercial=True,
    ),
    Case(
        "NCU dataset, commercial request",
        ("ai",),
        ("NCU",),
        "ai.training",
        DENY,
        DENY,
        (f"{V3}.testCommercial_negative_case_2", f"{V2}.testCommercial_negative"),
        commercial=True,
    ),
    # Abstain: a purpose naming no research category, and the sensitive-research flags.
    Case(
        "HMB dataset, purpose stating only that a collaborator is required",
        ("ai", "HMB"),
        (),
        "ai.training",
        ABSTAIN,
        DENY,
        both("testAbstainDecision_COL"),
        commitments=frozenset({"COL"}),
        why="fail closed: a request naming no DUO category is refused where the consent is "
        "limited to one; DUOS, finding no research category, leaves it to a person",
    ),
    Case(
        "HMB dataset, purpose stating only an ethics approval",
        ("ai", "HMB"),
        (),
        "ai.training",
        ABSTAIN,
        DENY,
        both("testAbstainDecision_ethicsApprovalRequired"),
        irb="IRB-2026-1",
        why="fail closed: as above",
    ),
    *SENSITIVE,
    # The retired version 2 matcher approved these flags; its successors abstain.
    Case(
        "GRU dataset, request flagged pediatric",
        ("ai", "GRU"),
        (),
        "ai.training,GRU",
        APPROVE,
        ABSTAIN,
        (f"{V2}.testPediatric_positive_2",),
        sensitive=("pediatric",),
        why="a steward decides on sensitive research, as DUOS's V3 and V4 matchers abstain",
    ),
    Case(
        "GRU dataset, request not flagged pediatric",
        ("ai", "GRU"),
        (),
        "ai.training,GRU",
        APPROVE,
        APPROVE,
        (f"{V2}.testPediatric_positive_3",),
    ),
    Case(
        "GRU dataset, request flagged one sex only",
        ("ai", "GRU"),
        (),
        "ai.training,GRU",
        APPROVE,
        ABSTAIN,
        (f"{V2}.testGenderMatch_positive_1",),
        sensitive=("one_sex_only",),
        why="as above",
    ),
    Case(
        "dataset without a sex limit, request flagged one sex only",
        ("ai",),
        (),
        "ai.training",
        APPROVE,
        ABSTAIN,
        (f"{V2}.testGenderMatch_positive_2",),
        sensitive=("one_sex_only",),
        why="as above",
    ),
    # From the rules as documented: no test method exercises these.
    Case("GRU dataset, GRU request", ("ai", "GRU"), (), "ai.training,GRU", APPROVE, APPROVE),
    Case("GRU dataset, DS request", ("ai", "GRU"), (), f"ai.training,{CANCER}", APPROVE, APPROVE),
    Case("HMB dataset, DS request", ("ai", "HMB"), (), f"ai.training,{CANCER}", APPROVE, APPROVE),
    Case(
        "DS(cancer) dataset, DS(cancer) request",
        ("ai", CANCER),
        (),
        f"ai.training,{CANCER}",
        APPROVE,
        APPROVE,
    ),
    Case(
        "DS(cancer) dataset, DS(colon cancer) request (five levels down)",
        ("ai", CANCER),
        (),
        f"ai.training,{COLON}",
        APPROVE,
        APPROVE,
    ),
    Case(
        "DS(cancer) dataset, DS(asthma) request",
        ("ai", CANCER),
        (),
        f"ai.training,{ASTHMA}",
        DENY,
        DENY,
    ),
    Case("DS(cancer) dataset, GRU request", ("ai", CANCER), (), "ai.training,GRU", DENY, DENY),
    Case(
        "NMDS dataset, methods research without a disease",
        ("ai", "HMB"),
        ("NMDS",),
        "ai.development,HMB",
        DENY,
        DENY,
    ),
    Case(
        "NMDS dataset, methods research for a covered disease",
        ("ai", "HMB"),
        ("NMDS",),
        f"ai.development,{CANCER}",
        APPROVE,
        APPROVE,
    ),
    Case(
        "NMDS + DS(cancer) dataset, methods research for intestinal cancer",
        ("ai", CANCER),
        ("NMDS",),
        f"ai.training,{INTESTINAL}",
        APPROVE,
        APPROVE,
    ),
    Case(
        "NMDS + DS(cancer) dataset, methods research for asthma",
        ("ai", CANCER),
        ("NMDS",),
        f"ai.training,{ASTHMA}",
        DENY,
        DENY,
    ),
    Case(
        "NCU dataset, non-commercial request from a for-profit",
        ("ai", "GRU"),
        ("NCU",),
        "ai.training,HMB",
        APPROVE,
        APPROVE,
        organisation="for_profit",
    ),
    Case(
        "IRB dataset, request with an ethics approval",
        ("ai", "GRU"),
        ("IRB",),
        "ai.training,HMB",
        APPROVE,
        APPROVE,
        irb="IRB-2026-1",
    ),
    Case(
        "IRB dataset, request without an ethics approval",
        ("ai", "GRU"),
        ("IRB",),
        "ai.training,HMB",
        DENY,
        DENY,
    ),
    # Several diseases in one research purpose: the dataset must match ALL of them (DUOS
    # matches every condition a purpose states).
    Case(
        "DS(cancer) dataset, request for intestinal cancer and colon cancer",
        ("ai", CANCER),
        (),
        f"ai.training,{INTESTINAL},{COLON}",
        APPROVE,
        APPROVE,
    ),
    Case(
        "DS(cancer) dataset, request for intestinal cancer and asthma",
        ("ai", CANCER),
        (),
        f"ai.training,{INTESTINAL},{ASTHMA}",
        DENY,
        DENY,
    ),
    Case(
        "HMB dataset, request for cancer and asthma",
        ("ai", "HMB"),
        (),
        f"ai.training,{CANCER},{ASTHMA}",
        APPROVE,
        APPROVE,
    ),
    Case(
        "GRU dataset without an AI purpose, AI request",
        ("GRU",),
        (),
        "ai.training,HMB",
        APPROVE,
        DENY,
        why="fail closed: a broad research consent does not cover AI use unless the "
        "optional legacy-research policy says so",
    ),
    Case(
        "HMB dataset without an AI purpose, AI request",
        ("HMB",),
        (),
        "ai.training,HMB",
        APPROVE,
        DENY,
        why="fail closed: as above",
    ),
    Case(
        "DS(cancer) dataset, DS request in another code system",
        ("ai", CANCER),
        (),
        "ai.training,DS:ICD10CM:C18",
        APPROVE,
        DENY,
        why="no cross-walk between code systems: a permit covers only codes of its own hierarchy",
    ),
    Case(
        "NPU dataset, requester of unknown organisation",
        ("ai", "GRU"),
        ("NPU",),
        "ai.training,HMB",
        APPROVE,
        DENY,
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


def ledger_answer(policies: PolicySet, case: Case) -> str:
    t = tree()
    purposes = tuple(t.validate(p) for p in case.consent)
    fact = ConsentFact("c", 1, "s", "permit", purposes, case.modifiers, ScopeFact(), 1)
    purpose = dataclasses.replace(
        Purpose.parse(
            case.request,
            commercial=case.commercial,
            irb_reference=case.irb,
            organisation_type=case.organisation,
        ),
        commitments=case.commitments,
    )
    classifier = Classifier(purpose)
    index = classifier.class_of(classifier.signature([fact]), "CT", "CHEST", None, "NO")
    if not decide_classes(policies, purpose, classifier.keys)[index].eligible:
        return DENY
    if conditions.needs_a_person(case.sensitive, set(case.modifiers)):
        return ABSTAIN
    return APPROVE


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_duos_matcher_cases(policies: PolicySet, case: Case) -> None:
    assert ledger_answer(policies, case) == case.ledger
    assert (case.duos == case.ledger) or case.why, "a difference must say why"
    # A settled difference only ever refuses or asks a steward; the ledger allowing more
    # than DUOS is marked open.
    assert case.open == (RANK[case.ledger] > RANK[case.duos])


def _ported() -> list[str]:
    return [s for c in CASES for s in c.sources if s != DOCUMENTED]


def test_every_reference_method_is_ported_or_set_aside() -> None:
    """Each test method of the three files is named by one row, or set aside with a reason."""
    methods = [f"{f}.{m}" for f, names in METHODS.items() for m in names]
    assert len(methods) == len(set(methods))
    ported = _ported()
    assert len(ported) == len(set(ported)), "a method is ported by one row"
    assert not set(ported) & set(NOT_EXPRESSIBLE)
    assert set(ported) | set(NOT_EXPRESSIBLE) == set(methods)
    assert all(NOT_EXPRESSIBLE.values())


def test_the_table_counts() -> None:
    read = {f: len(names) for f, names in METHODS.items()}
    ported = {f: sum(s.startswith(f"{f}.") for s in _ported()) for f in METHODS}
    assert read == {V4: 33, V3: 33, V2: 21}
    assert ported == {V4: 30, V3: 30, V2: 16}
    from_tests = [c for c in CASES if c.sources != (DOCUMENTED,)]
    agree = [c for c in CASES if c.duos == c.ledger]
    on_purpose = [c for c in CASES if c.duos != c.ledger and not c.open]
    assert (len(from_tests), len(CASES), len(agree), len(on_purpose)) == (40, 61, 49, 12)
    assert [c.name for c in CASES if c.open] == []


def _listed(numbers: list[int]) -> str:
    """``33, 33 and 21``: the per-file counts as the README writes them."""
    *first, last = (str(n) for n in numbers)
    return f"{', '.join(first)} and {last}"


def test_the_readme_gives_the_table_counts() -> None:
    """The README's section on the differences states the counts this table has."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    readme = " ".join(text.lower().split())
    methods = sum(len(names) for names in METHODS.values())
    ported = len(_ported())
    from_tests = sum(c.sources != (DOCUMENTED,) for c in CASES)
    agree = sum(c.duos == c.ledger for c in CASES)
    opened = sum(c.open for c in CASES)
    per_file = _listed([len(names) for names in METHODS.values()])
    ported_per_file = _listed([sum(s.startswith(f"{f}.") for s in _ported()) for f in METHODS])
    stated = (
        f"of their {methods} test methods ({per_file}), {ported} are expressible in the "
        f"ledger ({ported_per_file})",
        f"each named by the row that ports it ({from_tests} rows",
        f"the other {methods - ported} are set aside",
        f"with {len(CASES) - from_tests} rows from duos's rules as documented",
        f"{len(CASES)} cases, {agree} agree, {len(CASES) - agree - opened} differ on purpose"
        + (f" and {opened} open" if opened else ""),
    )
    for phrase in stated:
        assert phrase in readme, phrase
