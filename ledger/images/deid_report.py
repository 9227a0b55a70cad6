"""What became of each file of a ``ledger deid`` batch, and the batch's totals: the summary
the command prints and ``--json`` lists (``ledger/images/deid_files.py`` fills it)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    written = "written"
    quarantined = "quarantined"
    skipped = "skipped"
    failed = "failed"


@dataclass
class FileReport:
    """One input file's outcome. ``reasons`` are the categories the summary counts;
    ``detail`` says what about this file; ``pixels`` is the burned-in text decision;
    ``output`` is where it was written, relative to the output folder."""

    file: str
    outcome: Outcome
    reasons: list[str] = field(default_factory=list)
    detail: str | None = None
    output: str | None = None
    masked: bool = False
    pixels: str | None = None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "outcome": self.outcome.value}
        for key in ("reasons", "detail", "output", "pixels", "note"):
            value = getattr(self, key)
            if value:
                out[key] = value
        if self.masked:
            out["masked"] = True
        return out


@dataclass
class Summary:
    files: list[FileReport] = field(default_factory=list)
    removed: int = 0
    replaced: int = 0
    uids: int = 0
    ocr_images: int = 0
    ocr_seconds: float = 0.0

    def of(self, outcome: Outcome) -> list[FileReport]:
        return [f for f in self.files if f.outcome is outcome]

    def by_reason(self, outcome: Outcome) -> dict[str, int]:
        """Files per reason (a quarantined file may count under more than one)."""
        counts = Counter(r for f in self.of(outcome) for r in f.reasons)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def written(self) -> int:
        return len(self.of(Outcome.written))

    @property
    def masked(self) -> int:
        return sum(1 for f in self.files if f.masked)

    @property
    def failed(self) -> int:
        return len(self.of(Outcome.failed))

    def as_dict(self) -> dict[str, Any]:
        return {
            "files_in": len(self.files),
            "written": self.written,
            "masked": self.masked,
            "quarantined": len(self.of(Outcome.quarantined)),
            "quarantined_by_reason": self.by_reason(Outcome.quarantined),
            "skipped": len(self.of(Outcome.skipped)),
            "skipped_by_reason": self.by_reason(Outcome.skipped),
            "failed": self.failed,
            "failed_by_reason": self.by_reason(Outcome.failed),
            "removed": self.removed,
            "replaced": self.replaced,
            "uids": self.uids,
            "ocr_images": self.ocr_images,
            "ocr_seconds": round(self.ocr_seconds, 3),
            "files": [f.as_dict() for f in self.files],
        }
