"""Which de-identification a release applies, by the grant's purpose, and the engines that
apply it, kept per grant between calls (a pipeline retrieves a grant a study at a time,
and the engine's remembered UIDs, pseudonyms, date offsets and encoded method codes hold
for all of them)."""

from __future__ import annotations

import threading
from collections import OrderedDict

from ledger.access.grant_manifest import release_key
from ledger.consent.purposes import Purpose
from ledger.images.deid import DEFAULT_OPTIONS, Deidentifier, Option
from ledger.keystore import KeyRing

# Annex E options by purpose: generative training gets the strictest profile (it can
# memorise what it sees), so descriptors, graphics and structured content are cleaned and
# patient characteristics dropped; other AI uses keep what models learn from (age, sex,
# modified dates) with descriptors cleaned.
GENERATIVE_OPTIONS = frozenset(
    {
        Option.retain_long_modified_dates,
        Option.clean_descriptors,
        Option.clean_graphics,
        Option.clean_structured_content,
    }
)


def options_for(purpose: Purpose) -> frozenset[Option]:
    return GENERATIVE_OPTIONS if purpose.ai == "ai.generative" else DEFAULT_OPTIONS


def deidentifier(keys: KeyRing, grant_id: str, purpose: Purpose) -> Deidentifier:
    """The grant's de-identification engine, kept for the grant's next calls: a pipeline
    retrieves a grant a study at a time, and the engine's remembered UIDs, pseudonyms,
    date offsets and encoded method codes are the same for all of them. Kept by key and
    options, so a rotated master key or another purpose never meets an old engine."""
    key, options = release_key(keys, grant_id), options_for(purpose)
    with _engines_lock:
        engine = _engines.get((key, options))
        if engine is not None:
            _engines.move_to_end((key, options))
            return engine
    engine = Deidentifier(key, options)
    with _engines_lock:
        _engines[(key, options)] = engine
        while len(_engines) > ENGINES_KEPT:
            _engines.popitem(last=False)
    return engine


ENGINES_KEPT = 8  # grants whose engines a process keeps (each remembers up to deid.CACHED)
_engines: OrderedDict[tuple[bytes, frozenset[Option]], Deidentifier] = OrderedDict()
_engines_lock = threading.Lock()
