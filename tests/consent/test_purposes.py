"""The purpose tree and the consent algebra, including property tests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.consent.facts import ConsentFact, ImageFacts, ScopeFact, decide
from ledger.consent.purposes import Purpose, tree
from ledger.errors import InvalidInput

T = tree()
AI = [c for c, p in T.purposes.items() if p.branch == "ai"]
DUO = ["GRU", "HMB", "POA", "DS:C34", "DS:C50"]


def fact(decision: str, *purposes: str, scope: ScopeFact = ScopeFact(), n: int = 0) -> ConsentFact:
    return ConsentFact(
        f"c{n}",
        1,
        "s",
        decision,
        tuple(purposes),
        (),
        scope,
        hash((decision, tuple(purposes), scope)),
    )


def permitted(facts: list[ConsentFact], purpose: str, image: ImageFacts | None = None) -> bool:
    return decide(facts, Purpose.parse(purpose), image).permitted


def test_unknown_and_malformed_codes_are_refused() -> None:
    for bad in ("ai.dreaming", "DS", "GRU:x", "DS:", "hmb"):
        with pytest.raises(InvalidInput):
            T.validate(bad)
    with pytest.raises(InvalidInput):
        Purpose.parse("ai.training,ai.validation")
    with pytest.raises(InvalidInput):
        T.validate_modifiers(["XYZ"])


def test_descendants_are_covered_but_generative_needs_naming() -> None:
    assert permitted([fact("permit", "ai")], "ai.training")
    assert permitted([fact("permit", "ai.development")], "ai.fine_tuning")
    assert not permitted([fact("permit", "ai")], "ai.generative")
    assert not permitted([fact("permit", "ai.development")], "ai.generative")
    assert permitted([fact("permit", "ai.generative")], "ai.generative")
    assert not permitted([fact("permit", "ai.training")], "ai.inference")


def test_narrower_deny_carves_out_of_broader_permit() -> None:
    facts = [fact("permit", "ai"), fact("deny", "ai.development", n=1)]
    assert permitted(facts, "ai.inference")
    assert not permitted(facts, "ai.training")
    outcome = decide(facts, Purpose.parse("ai.training"))
    assert any("denied by consent c1" in r for r in outcome.reasons)


def test_broad_deny_covers_explicit_only_purposes() -> None:
    facts = [fact("permit", "ai.generative"), fact("deny", "ai", n=1)]
    assert not permitted(facts, "ai.generative")


def test_duo_category_limits_research() -> None:
    assert permitted([fact("permit", "ai.training")], "ai.training,DS:C34")
    assert permitted([fact("permit", "ai.training", "HMB")], "ai.training,DS:C34")
    assert permitted([fact("permit", "ai.training", "DS:C34")], "ai.training,DS:C34")
    assert not permitted([fact("permit", "ai.training", "DS:C34")], "ai.training,DS:C50")
    assert not permitted([fact("permit", "ai.training", "DS:C34")], "ai.training")
    assert not permitted([fact("permit", "ai.training", "POA")], "ai.training,HMB")


def test_broad_research_consent_without_ai_is_left_to_policy() -> None:
    outcome = decide([fact("permit", "GRU")], Purpose.parse("ai.development"))
    assert not outcome.permitted
    assert outcome.legacy_research
    assert "legacy-research policy" in outcome.reasons[0]


def test_scope_limits_images_and_missing_attributes_fail_closed() -> None:
    ct_only = ScopeFact(modalities=frozenset({"CT"}))
    facts = [fact("permit", "ai", scope=ct_only)]
    assert permitted(facts, "ai.training", ImageFacts("CT"))
    assert not permitted(facts, "ai.training", ImageFacts("MR"))
    assert not permitted(facts, "ai.training", ImageFacts(None))
    deny_mr = [
        fact("permit", "ai"),
        fact("deny", "ai", scope=ScopeFact(modalities=frozenset({"MR"})), n=1),
    ]
    assert permitted(deny_mr, "ai.training", ImageFacts("CT"))
    assert not permitted(deny_mr, "ai.training", ImageFacts("MR"))
    assert not permitted(deny_mr, "ai.training", ImageFacts(None))
    outcome = decide(deny_mr, Purpose.parse("ai.training"))
    assert outcome.permitted
    assert any("except images" in r for r in outcome.reasons)


def test_no_consent_means_deny() -> None:
    outcome = decide([], Purpose("ai.training"))
    assert not outcome.permitted
    assert outcome.reasons == ["no consent in force permits ai.training"]


purpose_sets = st.lists(st.sampled_from(AI + DUO), min_size=1, max_size=3, unique=True)
facts_st = st.lists(
    st.tuples(
        st.sampled_from(["permit", "deny"]), purpose_sets, st.sampled_from([None, "CT", "MR"])
    ),
    max_size=5,
)
requests_st = st.tuples(st.sampled_from([*AI, None]), st.sampled_from([*DUO, None])).filter(
    lambda r: r != (None, None)
)
images_st = st.sampled_from([None, ImageFacts("CT"), ImageFacts("MR"), ImageFacts(None)])


def _facts(spec: list[tuple[str, list[str], str | None]]) -> list[ConsentFact]:
    return [
        fact(d, *ps, scope=ScopeFact(modalities=frozenset({m}) if m else frozenset()), n=i)
        for i, (d, ps, m) in enumerate(spec)
    ]


@settings(max_examples=400, deadline=None)
@given(
    facts_st, st.sampled_from(AI + DUO), st.sampled_from([None, "CT", "MR"]), requests_st, images_st
)
def test_adding_a_deny_never_widens_what_is_permitted(
    spec: list[tuple[str, list[str], str | None]],
    deny_purpose: str,
    deny_modality: str | None,
    req: tuple[str | None, str | None],
    image: ImageFacts | None,
) -> None:
    request = Purpose(req[0], (req[1],) if req[1] else ())
    before = decide(_facts(spec), request, image).permitted
    after = decide(
        _facts([*spec, ("deny", [deny_purpose], deny_modality)]), request, image
    ).permitted
    assert not (after and not before)


@settings(max_examples=400, deadline=None)
@given(facts_st, st.sampled_from(AI + DUO), requests_st, images_st)
def test_adding_a_permit_never_narrows_unless_denied(
    spec: list[tuple[str, list[str], str | None]],
    permit_purpose: str,
    req: tuple[str | None, str | None],
    image: ImageFacts | None,
) -> None:
    request = Purpose(req[0], (req[1],) if req[1] else ())
    before = decide(_facts(spec), request, image).permitted
    after = decide(_facts([*spec, ("permit", [permit_purpose], None)]), request, image).permitted
    assert after or not before


@pytest.mark.parametrize(
    "text", ["ai.training", "ai.training,HMB", "ai.generative,DS:ICD10CM:C34", "HMB", "GRU"]
)
def test_a_purpose_reads_back_as_the_text_it_was_parsed_from(text: str) -> None:
    purpose = Purpose.parse(text)
    assert purpose.text == str(purpose) == text
    assert Purpose.parse(purpose.text) == purpose
    assert Purpose.of_fields(purpose.code, purpose.category) == purpose


def test_codes_are_put_in_order_and_split_into_the_stored_fields() -> None:
    for text in ("HMB,ai.training", " ai.training  HMB ", "HMB, ai.training,"):
        purpose = Purpose.parse(text)
        assert (purpose.ai, purpose.duo) == ("ai.training", ("HMB",))
        assert purpose.text == "ai.training,HMB"
        assert (purpose.code, purpose.category) == ("ai.training", "HMB")
    research = Purpose.parse("HMB")
    assert (research.ai, research.duo) == (None, ("HMB",))
    assert (research.code, research.category) == ("HMB", None)  # stored as the purpose itself
    assert Purpose.of_fields("ai.training", "DS:C34").duo == ("DS:ICD10CM:C34",)
    assert Purpose.of_fields("ai.training", None) == Purpose.of_fields("ai.training", "")
    assert Purpose.of_fields("ai.training,HMB", None) == Purpose.parse("ai.training,HMB")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ai.dreaming", "unknown purpose 'ai.dreaming'; see GET /v1/purposes for the codes"),
        ("ai.training,hmb", "unknown purpose 'hmb'; see GET /v1/purposes for the codes"),
        ("", "purpose is empty; name an AI purpose such as ai.training"),
        (" , ", "purpose is empty; name an AI purpose such as ai.training"),
        ("ai.training,DS", "purpose DS needs a qualifier, e.g. DS:C34"),
        ("GRU:x", "purpose GRU takes no qualifier"),
        ("ai.training,ai.inference", "a request names at most one AI purpose"),
        (
            "HMB,GRU",
            "a request names at most one DUO research category, or one or more diseases "
            "(DS:<SYSTEM>:<code>, each a code of its own)",
        ),
        (
            "ai.training,HMB,DS:C34",
            "a request names at most one DUO research category, or one or more diseases "
            "(DS:<SYSTEM>:<code>, each a code of its own)",
        ),
    ],
)
def test_unknown_or_ambiguous_purposes_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        Purpose.parse(text)
    assert refused.value.detail == message


def test_flags_travel_with_the_purpose_but_not_in_its_text() -> None:
    plain = Purpose.parse("ai.training")
    flagged = Purpose.parse("ai.training", commercial=True, irb_reference="IRB-2024-7")
    assert (flagged.commercial, flagged.irb_reference) == (True, "IRB-2024-7")
    assert flagged.text == plain.text == "ai.training"
    assert flagged != plain
    assert len({plain, flagged, Purpose.parse("ai.training")}) == 2  # a value: usable as a key


DISEASES = ["DS:C34", "DS:C34.1", "DS:C50", "DS:C50.9", "DS:J45"]


@settings(max_examples=400, deadline=None)
@given(
    facts_st,
    st.sampled_from([*AI, None]),
    st.lists(st.sampled_from(DISEASES), min_size=1, max_size=3, unique=True),
    st.sampled_from(DISEASES),
    images_st,
)
def test_naming_one_more_disease_never_widens_what_is_permitted(
    spec: list[tuple[str, list[str], str | None]],
    ai: str | None,
    named: list[str],
    more: str,
    image: ImageFacts | None,
) -> None:
    """Each disease must be covered and none refused: a request naming one more disease is
    permitted only where the narrower request was."""
    before = Purpose.parse(",".join([*([ai] if ai else []), *named]))
    after = Purpose.parse(",".join([*([ai] if ai else []), *named, more]))
    wider = decide(_facts(spec), after, image).permitted
    assert not (wider and not decide(_facts(spec), before, image).permitted)


def test_several_diseases_read_back_sorted_and_canonical() -> None:
    purpose = Purpose.parse("ai.training,DS:c50.9,DS:ICD10CM:C34.1,DS:C50.9")
    assert purpose.text == "ai.training,DS:ICD10CM:C34.1,DS:ICD10CM:C50.9"
    assert purpose.diseases == ("DS:ICD10CM:C34.1", "DS:ICD10CM:C50.9")
    assert Purpose.of_fields(purpose.code, purpose.category) == purpose
    research = Purpose.parse("DS:C50.9,DS:C34.1")
    assert (research.code, research.category) == ("DS:ICD10CM:C34.1", "DS:ICD10CM:C50.9")
    assert Purpose.of_fields(research.code, research.category) == research
