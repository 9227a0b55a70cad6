"""The purpose tree and the consent algebra, including property tests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.consent.facts import ConsentFact, ImageFacts, ScopeFact, decide
from ledger.consent.purposes import Request, tree
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
    return decide(facts, T.parse_request(purpose), image).permitted


def test_unknown_and_malformed_codes_are_refused() -> None:
    for bad in ("ai.dreaming", "DS", "GRU:x", "DS:", "hmb"):
        with pytest.raises(InvalidInput):
            T.validate(bad)
    with pytest.raises(InvalidInput):
        T.parse_request("ai.training,ai.validation")
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
    outcome = decide(facts, T.parse_request("ai.training"))
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
    outcome = decide([fact("permit", "GRU")], T.parse_request("ai.development"))
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
    outcome = decide(deny_mr, T.parse_request("ai.training"))
    assert outcome.permitted
    assert any("except images" in r for r in outcome.reasons)


def test_no_consent_means_deny() -> None:
    outcome = decide([], Request("ai.training", None))
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
    request = Request(*req)
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
    request = Request(*req)
    before = decide(_facts(spec), request, image).permitted
    after = decide(_facts([*spec, ("permit", [permit_purpose], None)]), request, image).permitted
    assert after or not before
