"""Imports every table module so ``SQLModel.metadata`` is complete for Alembic and tests.

One line per domain; keep it sorted.
"""

from ledger.access import models as _access  # noqa: F401
from ledger.consent import models as _consent  # noqa: F401
from ledger.http import idempotency as _idempotency  # noqa: F401
from ledger.images import models as _images  # noqa: F401
from ledger.principals import models as _principals  # noqa: F401
from ledger.provenance import commitments as _commitments  # noqa: F401
from ledger.provenance import models as _provenance  # noqa: F401
from ledger.registry import models as _registry  # noqa: F401
from ledger.web import models as _web  # noqa: F401
