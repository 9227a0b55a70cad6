"""Free text under the Clean Descriptors option (PS3.15 Annex E): keep what is known to be
safe, replace everything else.

"Clean" in PS3.15 means replacing a value with one of similar meaning known to hold no
identifying information; what cannot be shown clean is removed. A deny-list built from the
file's header is not enough (free text names people the header does not hold: a
technologist, a relative, another patient), so the rule is an allow-list:

1. identifier-like patterns go first, whatever they say: e-mail addresses, URLs, dotted
   number chains (UIDs), dates in any written form (20240131, 2024-01-31, 31/01/2024,
   31.01.24, Jan 31 2024, 31st January 2024, 31/01), phone numbers (seven digits or more);
2. every identifying value of the file's own header goes next, matched case-insensitively
   with any separators between its letters and digits (``MRN-0001``, ``mrn 0001``,
   ``DOE^JANE``, ``Doe, Jane``), with the day and month of every date it holds;
3. of what is left, a word stays only when it is in ``data/descriptor_vocabulary.txt``
   (imaging and clinical vocabulary) and not a word of a person's name or an id in the
   header, or when it is a number that is not a date or an id (at most four digits, not a
   year), a quantity with a unit (``5mm``, ``1.5T``), a short technical code (``B30f``,
   ``b1000``) or a single letter.

Everything else becomes ``[REMOVED]`` (runs of them one marker). A value left without any
clinical word says nothing useful and is removed (the caller applies the basic profile's
action). Pure: strings in, strings out, and a read of the header.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

VOCABULARY = "data/descriptor_vocabulary.txt"
MARKER = "[REMOVED]"
SHORT_MARKER = "*"
FREE_TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UT", "UC"})
MAX_CHARS = {"SH": 16, "LO": 64, "ST": 1024, "LT": 10240}
# The code sequence macro's coded values (Code Value, Coding Scheme Designator and Version,
# Long Code Value): codes, not prose; Code Meaning is cleaned like any text.
CODED = frozenset({0x00080100, 0x00080102, 0x00080103, 0x00080119})
# Free text that table E.1-1 does not list, with the basic profile action we give it. SR
# Text Value: a dummy keeps a TEXT content item valid; Clean Descriptors cleans it instead.
UNLISTED_FREE_TEXT = {0x0040A160: "D"}

_HEADER_VRS = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC", "UR", "AE"})
READ_VRS = _HEADER_VRS | {"DA", "DT"}  # what ``header_values`` decodes
_B = r"(?<![^\W_])"  # no letter or digit before
_E = r"(?![^\W_])"  # no letter or digit after
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DAY = r"[0-3]?\d(?:st|nd|rd|th)?"
_YEAR = r"'?\d{2}(?:\d{2})?"
_SEP = r"[\s,./-]*"
PATTERNS = re.compile(
    "|".join(
        [
            r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",  # e-mail
            r"(?:https?://|www\.)\S+",  # URL
            rf"{_B}\d+(?:\.\d+){{2,}}{_E}",  # UIDs, dotted dates
            rf"{_B}\d{{1,4}}[/.-]\d{{1,2}}[/.-]\d{{1,4}}{_E}",  # 2024-01-31, 31/01/2024
            rf"{_B}{_DAY}{_SEP}{_MONTH}(?:{_SEP}{_YEAR})?{_E}",  # 31 January 2024
            rf"{_B}{_MONTH}{_SEP}{_DAY}(?:{_SEP}{_YEAR})?{_E}",  # Jan 31, 2024
            rf"{_B}{_MONTH}{_SEP}\d{{4}}{_E}",  # January 2024
            rf"{_B}\d{{1,2}}/\d{{1,2}}{_E}",  # 31/01
        ]
    ),
    re.IGNORECASE,
)
PHONE = re.compile(
    rf"{_B}(?:\+\d{{1,3}}[\s.-]?)?(?:\(\d{{1,5}}\)[\s.-]?)?\d{{2,5}}(?:[\s.-]\d{{2,5}}){{1,5}}{_E}"
)
TOKEN = re.compile(r"\d+(?:[.,]\d+)?[^\W\d_]*|[^\W_]+")
NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
QUANTITY = re.compile(r"(\d+(?:[.,]\d+)?)([^\W\d_]+)")
CODE = re.compile(r"[a-z]{1,2}\d{1,2}[a-z]?|b\d{2,4}")
SEPARATORS = re.compile(r"[\W_]+")
SENTINEL = "\x00"
RUNS = re.compile(r"\x00(?:[^\w\x00]*\x00)*")
SPACES = re.compile(r"[ \t]+")


@dataclass(frozen=True)
class Vocabulary:
    words: frozenset[str]  # every word that may stay
    content: frozenset[str]  # those that make a value worth keeping (not function words)


@cache
def vocabulary() -> Vocabulary:
    words: set[str] = set()
    function: set[str] = set()
    section = ""
    for raw in resources.files("ledger.images").joinpath(VOCABULARY).read_text().splitlines():
        line = raw.split("#", 1)[0].strip().lower()
        if not line:
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        words.add(line)
        if section == "function":
            function.add(line)
    return Vocabulary(frozenset(words), frozenset(words - function))


@dataclass(frozen=True)
class HeaderValues:
    """What one file's header says about the person: normalised values (letters and digits
    only, lower case, four or more) to find anywhere, and single words never to keep."""

    values: frozenset[str]
    words: frozenset[str]


def header_values(ds: Dataset, table: dict[int, str]) -> HeaderValues:
    """The identifying values of ``ds``, sequences included: every text value the profile
    removes or replaces (not one it keeps, remaps or cleans), every person name, and the
    day and month of every date."""
    values: set[str] = set()
    words: set[str] = set()

    def visit(d: Dataset) -> None:
        for raw in d.elements():
            vr = known_vr(raw)
            if vr is not None and vr not in READ_VRS:
                continue  # not decoded: a value of no interest here
            elem = d[raw.tag]
            vr = elem.VR
            if vr == "SQ":
                for item in elem.value:
                    visit(item)
                continue
            if vr in ("DA", "DT"):
                for text in _strings(elem.value):
                    values.update(_date_forms(text))
                continue
            if vr not in _HEADER_VRS or elem.tag.is_private:
                continue
            if vr != "PN" and table.get(int(elem.tag)) in (None, "K", "C", "U"):
                continue
            for text in _strings(elem.value):
                lowered = text.lower()
                norm = SEPARATORS.sub("", lowered)
                if len(norm) >= 4:
                    values.add(norm)
                for word in SEPARATORS.split(lowered):
                    if (vr == "PN" and len(word) >= 2) or (
                        len(word) >= 3 and any(c.isdigit() for c in word)
                    ):
                        words.add(word)

    visit(ds)
    return HeaderValues(frozenset(values), frozenset(words))


def known_vr(elem: DataElement | RawDataElement) -> str | None:
    """The VR of ``elem`` without decoding it, or None when only decoding can tell: an
    implicit VR element whose tag is not in the dictionary or has an ambiguous VR
    (``US or SS``), a sequence's VR, or UN (pydicom decodes it as its dictionary VR)."""
    vr = elem.VR
    if vr is None:
        try:
            vr = dictionary_VR(elem.tag)
        except KeyError:
            return None
    return None if vr in ("UN", "SQ") or " " in vr else vr


def _strings(value: Any) -> Iterable[str]:
    if value is None or value == "":
        return ()
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value if v not in (None, "")]
    return (str(value),)


def _date_forms(value: str) -> set[str]:
    """Day and month of a DICOM date, as digits in both orders (``0203``, ``0302``): the
    complete date in any written form is a pattern of its own."""
    if len(value) < 8 or not value[:8].isdigit():
        return set()
    month, day = value[4:6], value[6:8]
    return {day + month, month + day}


@lru_cache(maxsize=4096)
def _loose(norm: str) -> re.Pattern[str]:
    """``norm`` with any separators between its letters and digits, as a whole word."""
    return re.compile(_B + r"[\W_]*".join(map(re.escape, norm)) + _E, re.IGNORECASE)


@dataclass
class Cleaned:
    text: str | None  # None: nothing useful is left, remove the value
    replaced: int  # words and patterns replaced by the marker


class TextCleaner:
    """Cleans free text with the vocabulary and one file's header."""

    def __init__(self, header: HeaderValues) -> None:
        self.header = header
        self.vocabulary = vocabulary()

    def clean(self, text: str, vr: str = "LT") -> Cleaned:
        text, replaced = PATTERNS.subn(SENTINEL, text.replace(SENTINEL, ""))
        before = text.count(SENTINEL)
        text = PHONE.sub(_phone, text)
        replaced += text.count(SENTINEL) - before
        if self.header.values:
            norm = SEPARATORS.sub("", text.lower())
            for value in self.header.values:
                if value in norm:
                    text, n = _loose(value).subn(SENTINEL, text)
                    replaced += n
        out: list[str] = []
        useful = False
        last = 0
        for match in TOKEN.finditer(text):
            out.append(text[last : match.start()])
            token = match.group()
            word = token.lower()
            if self._keep(word):
                out.append(token)
                useful = useful or word in self.vocabulary.content
            else:
                out.append(SENTINEL)
                replaced += 1
            last = match.end()
        out.append(text[last:])
        if not useful:
            return Cleaned(None, replaced)
        cleaned = RUNS.sub(MARKER, "".join(out))
        cleaned = "\n".join(SPACES.sub(" ", line).strip() for line in cleaned.splitlines())
        return Cleaned(_fit(cleaned.strip(), MAX_CHARS.get(vr)), replaced)

    def _keep(self, word: str) -> bool:
        if word in self.header.words:
            return False
        if word in self.vocabulary.words:
            return True
        if NUMBER.fullmatch(word):
            return _plain_number(word)
        quantity = QUANTITY.fullmatch(word)
        if quantity:
            unit = quantity.group(2)
            return _plain_number(quantity.group(1)) and (
                unit in self.vocabulary.words or len(unit) == 1
            )
        return len(word) == 1 or CODE.fullmatch(word) is not None


def _phone(match: re.Match[str]) -> str:
    digits = sum(c.isdigit() for c in match.group())
    return SENTINEL if digits >= 7 else match.group()


def _plain_number(number: str) -> bool:
    """A number that is neither an id (five digits or more before the point, seven in all)
    nor a year."""
    whole = re.split(r"[.,]", number, maxsplit=1)[0]
    if len(whole) >= 5 or sum(c.isdigit() for c in number) >= 7:
        return False
    return not (len(whole) == 4 and 1900 <= int(whole) <= 2100)


def _fit(text: str, limit: int | None) -> str:
    """Within the VR's length: shorter markers first, then whole words dropped."""
    if limit is None or len(text) <= limit:
        return text
    text = text.replace(MARKER, SHORT_MARKER)
    if len(text) > limit:
        cut = text[: limit + 1]
        text = cut[: cut.rfind(" ")] if " " in cut else cut[:limit]
    return text.rstrip()
