"""Imports every table module so ``SQLModel.metadata`` is complete for Alembic and tests."""

from ledger.principals import models as _principals  # noqa: F401
from ledger.provenance import models as _provenance  # noqa: F401
