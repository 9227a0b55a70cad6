"""disease codes of stored consents: reported, not rewritten

Consents recorded before disease codes named their code system hold qualifiers such as
``DS:C34`` or ``DS:MONDO_0004992``. This revision changes no row: each consent version's
purposes are also in the log entry that recorded it, which the Merkle tree and the signed
checkpoints commit to, so rewriting the table would make it contradict its own signed
history (``ledger.consent.disease_report`` says why at length). The decision path reads every
stored qualifier normalised (``DS:C34`` is ``DS:ICD10CM:C34``), and one that does not
normalise is kept and fails closed, so nothing a decision depends on changes.

What it does: print, once, on upgrade, how many stored codes are canonical, read normalised
or unreadable, naming the unreadable ones (``ledger consents diseases --check`` says the same
at any time, with ``--json``).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 21:40:00.000000
"""

import logging
import sys
from collections.abc import Sequence

from alembic import op
from sqlalchemy.orm import Session

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    from ledger.consent.disease_report import report

    with Session(bind=op.get_bind()) as session:
        found = report(session)
    summary = found.summary()
    if not summary["codes"]:
        return
    say(
        logging.WARNING if summary["unreadable"] else logging.INFO,
        "Disease codes in stored consents: %d canonical, %d read normalised, %d do not "
        "normalise (kept as stored; they fail closed). Nothing was rewritten.",
        summary["canonical"],
        summary["normalises"],
        summary["unreadable"],
    )
    for code in found.unreadable:
        say(
            logging.WARNING,
            "DS:%s (%d consent(s), %d active) does not normalise: %s; amend those consents "
            "(ledger consents diseases --check lists them)",
            code.stored,
            code.consents,
            code.active,
            code.problem,
        )


def say(level: int, message: str, *args: object) -> None:
    """Log; and where nothing would show a warning (``ledger db upgrade`` configures no
    logging, and Alembic's logger has only a NullHandler), print it to stderr."""
    log.log(level, message, *args)
    if level >= logging.WARNING and not _heard():
        print(message % args, file=sys.stderr)


def _heard() -> bool:
    logger: logging.Logger | None = log
    while logger is not None:
        if any(not isinstance(h, logging.NullHandler) for h in logger.handlers):
            return True
        if not logger.propagate:
            return False
        logger = logger.parent
    return False


def downgrade() -> None:
    """Nothing was changed, so nothing is undone."""
