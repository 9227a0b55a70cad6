"""Valued DUO modifiers (issue 23): the one syntax, its validation, when a time limit ends,
and what a request does not meet. Pure: no database."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from ledger.consent import csv_import, modifiers
from ledger.consent.purposes import tree
from ledger.errors import InvalidInput

KNOWN = tree().modifiers


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("ncu", "NCU"),
        (" mor:2027-06-30 ", "MOR:2027-06-30"),
        ("TS:012m", "TS:12M"),
        ("ts:2027-12-31", "TS:2027-12-31"),
        ("gs:fr", "GS:FR"),
        ("GS:eea", "GS:EEA"),
        ("us:6f1c0e0a-0000-4000-8000-000000000001", "US:6F1C0E0A-0000-4000-8000-000000000001"),
        ("is:chu-lyon", "IS:CHU-LYON"),
        ("PS:lung_screening.2", "PS:LUNG_SCREENING.2"),
    ],
)
def test_modifiers_have_one_form(given: str, canonical: str) -> None:
    assert modifiers.canonical(given, KNOWN) == canonical


@pytest.mark.parametrize(
    "bad",
    [
        "MOR", "MOR:2027-13-01", "MOR:27-06-30", "TS", "TS:0M", "TS:1201M", "TS:12", "TS:12Y",
        "GS", "GS:FRA", "GS:Europe", "US", "US:a b", "IS:CHU;LYON", "PS:", "NCU:1", "XYZ:1",
    ],
)  # fmt: skip
def test_malformed_values_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        tree().validate_modifiers([bad])


def test_a_list_is_the_modifier_repeated_sorted_and_without_repeats() -> None:
    assert tree().validate_modifiers(["GS:DE", "gs:fr", "GS:DE", "NCU"]) == [
        "GS:DE",
        "GS:FR",
        "NCU",
    ]


def test_a_time_limit_ends_at_the_end_of_its_day_or_after_its_months() -> None:
    start = datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
    assert modifiers.use_ends("TS:2027-12-31", start) == datetime(2028, 1, 1, tzinfo=UTC)
    assert modifiers.use_ends("TS:1M", start) == datetime(2026, 2, 28, 9, 30, tzinfo=UTC)
    assert modifiers.use_ends("TS:12M", start) == datetime(2027, 1, 31, 9, 30, tzinfo=UTC)
    assert modifiers.use_ends("TS:25M", start) == datetime(2028, 2, 29, 9, 30, tzinfo=UTC)
    assert modifiers.use_ends("GS:FR", start) is None


def test_what_a_request_does_not_meet() -> None:
    def unmet(codes: list[str], **who: object) -> tuple[str, ...]:
        args: dict[str, object] = {"no_publication_before": None, "region": None, **who}
        return modifiers.unmet(codes, **args)  # type: ignore[arg-type]

    assert unmet(["NCU", "PUB"]) == ()
    assert unmet(["MOR:2027-06-30"]) == ("MOR",)
    assert unmet(["MOR:2027-06-30"], no_publication_before=date(2027, 6, 30)) == ()
    assert unmet(["MOR:2027-06-30"], no_publication_before=date(2027, 6, 29)) == ("MOR",)
    assert unmet(["GS:EU"], region="FR") == ()
    assert unmet(["GS:EU"], region="CH") == ("GS",)
    assert unmet(["GS:EU", "GS:CH"], region="CH") == ()
    assert unmet(["GS:EEA"], region="NO") == ()
    assert unmet(["GS:FR"]) == ("GS",)  # no region recorded: outside every one
    assert unmet(["US:A1", "US:B2"], requester="b2") == ()
    assert unmet(["US:A1"], requester="B2") == ("US",)
    assert unmet(["IS:CHU-LYON"], institution="chu-lyon") == ()
    assert unmet(["PS:P1"], project=None) == ("PS",)
    assert unmet(["US", "GS", "MOR"]) == ("GS", "MOR", "US")  # stored without a value


def test_a_csv_with_a_malformed_modifier_imports_nothing() -> None:
    text = (
        "issuer,patient_id,decision,purposes,modifiers\n"
        "urn:x,P1,permit,ai,TS:12M;GS:FR\n"
        "urn:x,P2,permit,ai,TS:13X\n"
        "urn:x,P3,permit,ai,GS:FR;GS:Europe\n"
    )
    parsed = csv_import.parse(text)
    assert [e["line"] for e in parsed.errors] == [3, 4]
    with pytest.raises(csv_import.ImportFailed):
        csv_import.check(parsed)
