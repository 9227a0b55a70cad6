"""Clean Descriptors: identifying values planted in every kind of free text (descriptors,
comments, code meanings in cleaned sequences, SR text values two levels down) never leave,
and the clinical words around them do."""

from __future__ import annotations

import re
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from ledger.images.deid import DEFAULT_OPTIONS, Deidentifier, Option, rules
from ledger.images.deid_text import MARKER, HeaderValues, TextCleaner, header_values
from tests.images.dicom_factory import ct_dataset, write

# The planted input is as dirty as real input: descriptors longer than their VR allows.
pytestmark = pytest.mark.filterwarnings("ignore:The value length")
KEY = b"t" * 32
SURNAME = "Quixwoldt"
GIVEN = "Marisol"
PATIENT_ID = "ZQ7731904"
ACCESSION = "ACC88412957"
BIRTH = "19710203"
BIRTH_FORMS = [
    "19710203",
    "1971-02-03",
    "03/02/1971",
    "02/03/1971",
    "03.02.1971",
    "3.2.71",
    "Feb 3 1971",
    "3 February 1971",
    "February 3rd, 1971",
    "03-Feb-1971",
]
PHONE = "+44 20 7946 0958"
OTHER_PHONE = "555-867-5309"
EMAIL = "marisol.quixwoldt@example.org"
INSTITUTION = "Thistlebrook Infirmary"
STRANGER = "Dr Zyxwvut Quenby"  # a technologist the header does not name
RELATIVE = "Wendeline"  # the patient's sister, not in the header either
PLANTED = [
    SURNAME,
    GIVEN,
    f"{SURNAME}^{GIVEN}",
    f"{GIVEN} {SURNAME}",
    PATIENT_ID,
    ACCESSION,
    *BIRTH_FORMS,
    PHONE,
    OTHER_PHONE,
    EMAIL,
    INSTITUTION,
    "Thistlebrook",
    "Zyxwvut",
    "Quenby",
    RELATIVE,
]


def _planted(text: str) -> str:
    """A sentence naming everything, in the forms people write."""
    return (
        f"for {SURNAME.upper()}, {GIVEN} ({GIVEN} {SURNAME}) MRN {PATIENT_ID} acc {ACCESSION} "
        f"born {' / '.join(BIRTH_FORMS)} tel {PHONE} or {OTHER_PHONE} mail {EMAIL} at "
        f"{INSTITUTION}; done by {STRANGER} with sister {RELATIVE} {text}"
    )


def _source() -> Dataset:
    ds = ct_dataset(PATIENT_ID, rows=8)
    ds.PatientName = f"{SURNAME}^{GIVEN}"
    ds.PatientBirthDate = BIRTH
    ds.AccessionNumber = ACCESSION
    ds.PatientTelephoneNumbers = PHONE
    ds.InstitutionName = INSTITUTION
    ds.StudyDescription = f"CT CHEST W CONTRAST {SURNAME} {BIRTH_FORMS[2]}"
    ds.SeriesDescription = "AX T2 FLAIR"
    ds.ProtocolName = f"ROUTINE CHEST {ACCESSION}"
    ds.ImageComments = _planted("axial lung nodule follow up")
    ds.PatientComments = _planted("allergic to iodine contrast")
    ds.AdditionalPatientHistory = _planted("history of lung cancer")
    ds.StudyComments = _planted("compare with prior CT")
    ds.AcquisitionComments = _planted("breath hold")
    ds.CommentsOnThePerformedProcedureStep = _planted("contrast injection")  # ST
    ds.ReasonForVisit = _planted("chest pain")  # UT
    ds.Occupation = f"{SURNAME} farm"  # SH: nothing clinical, removed
    ds.PerformedProcedureStepDescription = f"CT CHEST {GIVEN} {SURNAME}"
    ds.AdmittingDiagnosesDescription = ["CHEST PAIN", f"fall at {SURNAME} farm {BIRTH}"]
    request = Dataset()
    request.RequestedProcedureDescription = f"CT CHEST ABDOMEN for {SURNAME} {PATIENT_ID}"
    request.ScheduledProcedureStepDescription = _planted("chest")
    ds.RequestAttributesSequence = Sequence([request])
    ds.RequestedProcedureDescription = f"CT CHEST {EMAIL} {OTHER_PHONE}"
    reason = Dataset()
    reason.CodeValue = "R07.4"
    reason.CodingSchemeDesignator = "I10"
    reason.CodeMeaning = f"chest pain after fall at {INSTITUTION} {STRANGER}"
    ds.ReasonForRequestedProcedureCodeSequence = Sequence([reason])
    ds.ContentSequence = Sequence([_text_item(_planted("nodule right lower lobe"), nested=True)])
    return ds


def _text_item(text: str, *, nested: bool = False) -> Dataset:
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "TEXT"
    name = Dataset()
    name.CodeValue = "121071"
    name.CodingSchemeDesignator = "DCM"
    name.CodeMeaning = "Finding"
    item.ConceptNameCodeSequence = Sequence([name])
    item.TextValue = text
    if nested:
        item.ContentSequence = Sequence([_text_item(_planted("stable mass"))])
    return item


def _texts(ds: Dataset) -> str:
    """Every text value, squashed together by ``_squash``. UIDs are left out: the remapped
    ones are 39 random digits, where a short planted date form (``3271``) turns up now and
    then by chance."""
    out = []
    for elem in ds.iterall():
        if elem.VR not in ("OB", "OW", "OF", "OD", "OL", "OV", "UN", "SQ", "UI"):
            out.append(str(elem.value))
    return "\n".join(out)


def _squash(text: str | bytes) -> str:
    value = text.decode("latin-1") if isinstance(text, bytes) else text
    return re.sub(r"[\W_]+", "", value.lower())


def _assert_nothing_planted(raw: bytes, out: Dataset) -> None:
    lowered = raw.decode("latin-1").lower()
    squashed = _squash(_texts(out))
    left = [s for s in PLANTED if s.lower() in lowered or _squash(s) in squashed]
    assert left == [], f"planted values left: {left}"


def _deidentify(engine: Deidentifier, tmp_path: Path) -> tuple[bytes, Dataset, object]:
    ds = _source()
    result = engine.apply(ds)
    path = write(ds, tmp_path / "out.dcm")
    return path.read_bytes(), pydicom.dcmread(path), result


def test_clean_descriptors_leave_nothing_identifying_and_keep_clinical_words(
    tmp_path: Path,
) -> None:
    raw, out, result = _deidentify(Deidentifier(KEY, DEFAULT_OPTIONS), tmp_path)
    _assert_nothing_planted(raw, out)
    assert out.StudyDescription.startswith("CT CHEST W CONTRAST")
    assert out.SeriesDescription == "AX T2 FLAIR"
    assert out.ProtocolName == f"ROUTINE CHEST {MARKER}"
    assert "axial lung nodule follow up" in out.ImageComments
    assert MARKER in out.ImageComments
    assert "Occupation" not in out  # nothing clinical left: the basic profile removes it
    assert out.AdmittingDiagnosesDescription == ["CHEST PAIN", f"fall at {MARKER}"]
    request = out.RequestAttributesSequence[0]
    assert request.RequestedProcedureDescription.startswith("CT CHEST ABDOMEN")
    reason = out.ReasonForRequestedProcedureCodeSequence[0]
    assert reason.CodeValue == "R07.4"  # codes are not prose
    assert reason.CodeMeaning.startswith("chest pain after fall at")
    text = out.ContentSequence[0]
    assert "nodule right lower lobe" in text.TextValue
    assert "stable mass" in text.ContentSequence[0].TextValue
    assert text.ConceptNameCodeSequence[0].CodeMeaning == "Finding"
    assert result.descriptors_cleaned >= 15
    assert result.descriptors_removed >= 1
    assert result.words_replaced > 50
    method = " ".join(out.DeidentificationMethod)
    assert "2026c" in method
    assert f"{result.descriptors_cleaned} cleaned" in method
    assert "113105" in {item.CodeValue for item in out.DeidentificationMethodCodeSequence}


def test_without_the_option_descriptors_go_as_the_basic_profile_says(tmp_path: Path) -> None:
    raw, out, result = _deidentify(Deidentifier(KEY, options=[]), tmp_path)
    _assert_nothing_planted(raw, out)
    basic = rules(frozenset())
    assert basic[0x00081030] == "X"
    for keyword in ("StudyDescription", "SeriesDescription", "ImageComments", "PatientComments"):
        assert keyword not in out
    assert basic[0x00321060] == "Z"
    assert out.RequestedProcedureDescription in (None, "")
    assert basic[0x00181030] == "D"
    assert out.ProtocolName == "REMOVED"
    assert "RequestAttributesSequence" not in out  # X, with everything inside it
    assert out.ContentSequence[0].TextValue == "REMOVED"  # SR text: a dummy, item stays valid
    assert result.descriptors_cleaned == 0
    assert result.descriptors_removed >= 15
    codes = {item.CodeValue for item in out.DeidentificationMethodCodeSequence}
    assert "113105" not in codes
    assert "2026c" in " ".join(out.DeidentificationMethod)


def test_every_written_date_form_and_identifier_pattern_goes() -> None:
    cleaner = TextCleaner(HeaderValues(frozenset(), frozenset()))
    for date in [*BIRTH_FORMS, "31 Jan 2024", "Jan 31, 2024", "31st January 2024", "31/01"]:
        cleaned = cleaner.clean(f"CT CHEST {date}").text
        assert cleaned == f"CT CHEST {MARKER}", date
    for value in [EMAIL, PHONE, OTHER_PHONE, "AB1234567", "12345678", "1.2.840.10008.1.2"]:
        assert cleaner.clean(f"MR BRAIN {value}").text == f"MR BRAIN {MARKER}", value


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("CT CHEST W CONTRAST", "CT CHEST W CONTRAST"),
        ("AX T2 FLAIR", "AX T2 FLAIR"),
        ("Thorax 1.0 B30f", "Thorax 1.0 B30f"),
        ("AX DWI b1000 ADC 5mm 3.0T", "AX DWI b1000 ADC 5mm 3.0T"),
        ("CT HEAD WO IV 120 kV 250 mAs", "CT HEAD WO IV 120 kV 250 mAs"),
        ("SAG T1 FS POST C+", "SAG T1 FS POST C+"),
        ("CT chest for Smith follow-up", f"CT chest for {MARKER} follow-up"),
        ("Dr Smith", None),  # nothing clinical: removed
        ("of the and", None),
    ],
)
def test_allow_list(text: str, kept: str | None) -> None:
    assert TextCleaner(HeaderValues(frozenset(), frozenset())).clean(text).text == kept


def test_a_header_name_that_is_a_clinical_word_is_still_removed() -> None:
    ds = ct_dataset(rows=8)
    ds.PatientName = "HEAD^HAND"  # surnames that are also words of the vocabulary
    header = header_values(ds, rules(DEFAULT_OPTIONS))
    cleaned = TextCleaner(header).clean("CT HEAD and CHEST for Hand", "LO").text
    assert cleaned == f"CT {MARKER} and CHEST for {MARKER}"


def test_short_vrs_stay_within_their_length() -> None:
    cleaner = TextCleaner(HeaderValues(frozenset(), frozenset()))
    assert cleaner.clean("CT Quixwoldt CHEST Zyxwvut ABDOMEN", "SH").text == "CT * CHEST *"
    long = " ".join(["CHEST"] * 30)
    cleaned = cleaner.clean(long, "LO").text
    assert cleaned is not None
    assert len(cleaned) <= 64


def test_clean_structured_content_alone_cleans_sr_text(tmp_path: Path) -> None:
    engine = Deidentifier(KEY, [Option.clean_structured_content])
    raw, out, _ = _deidentify(engine, tmp_path)
    _assert_nothing_planted(raw, out)
    assert "nodule right lower lobe" in out.ContentSequence[0].TextValue
    assert "StudyDescription" not in out
