"""The element table (``ledger.consent.fhir_elements``) covers every element of Consent and
of its provisions that ``fhir.resources`` knows, in R4 and R5, and the README lists each."""

from __future__ import annotations

from pathlib import Path

import pytest
from fhir.resources.consent import Consent as ConsentR5
from fhir.resources.consent import ConsentProvision as ProvisionR5
from fhir.resources.R4B.consent import Consent as ConsentR4B
from fhir.resources.R4B.consent import ConsentProvision as ProvisionR4B
from pydantic import BaseModel

from ledger.consent import fhir_elements

README = Path(__file__).resolve().parents[2] / "README.md"


def _elements(model: type[BaseModel]) -> set[str]:
    names = {field.alias or name for name, field in model.model_fields.items()}
    return {n for n in names if not n.startswith("_") and n != "fhir_comments"}


@pytest.mark.parametrize(
    ("version", "consent", "provision"),
    [("R4", ConsentR4B, ProvisionR4B), ("R5", ConsentR5, ProvisionR5)],
)
def test_the_table_lists_every_element(
    version: str, consent: type[BaseModel], provision: type[BaseModel]
) -> None:
    assert set(fhir_elements.ROOT[version]) == _elements(consent) | {"resourceType"}
    assert set(fhir_elements.PROVISION[version]) == _elements(provision)


def test_the_readme_lists_every_element_with_its_versions() -> None:
    rows = {}
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if (
            len(cells) == 5
            and cells[0].startswith("`")
            and cells[3]
            in (
                fhir_elements.MAPPED,
                fhir_elements.KEPT,
                fhir_elements.LEFT_OUT,
                fhir_elements.REFUSED,
            )
        ):
            rows[cells[0].strip("`")] = cells
    for prefix, table in (("", fhir_elements.ROOT), ("provision.", fhir_elements.PROVISION)):
        for version, column in (("R4", 1), ("R5", 2)):
            for element, (action, _) in table[version].items():
                row = rows.get(prefix + element)
                assert row is not None, f"README has no row for {prefix}{element}"
                assert row[column] == "✓", f"{prefix}{element} in {version}"
                assert row[3] == action, f"{prefix}{element}: README says {row[3]}"
