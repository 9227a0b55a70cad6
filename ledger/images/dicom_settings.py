"""How the ledger has pydicom treat values it reads and writes, set once on import.

pydicom checks each value against its VR as it decodes or assigns it and, by default,
warns about one that does not fit, quoting it: ``Invalid value for VR DA: 'SMITH1980'``.
Those warnings go to the process's standard error, which is the server's log, so a
malformed value in a patient's file (a name typed into a date, an identifier into a UID)
would reach the log. The ledger acts on none of them: ingest checks what it needs itself
(``validation``), de-identification replaces or removes what it does not keep, and
``ledger deid`` reports odd input in its outcomes. So the checks are off: nothing is
quoted, and decoding a header costs a tenth less. Values are read and written the same
either way (the checks only warn).

Imported for its effect by the modules that decode values from files (``deid``,
``validation``, ``pixels``), so it is set before any value is read.
"""

from __future__ import annotations

from pydicom import config


def quiet() -> None:
    config.settings.reading_validation_mode = config.IGNORE
    config.settings.writing_validation_mode = config.IGNORE


quiet()
