"""Policy test cases (``policies/tests/*.json``), run by ``ledger policy test`` and by the
test suite, so a policy edit that changes a decision fails ``make test``.

A file has an optional ``action``, ``defaults`` (a context) and ``cases``; a case overrides
parts of the context, names its ``action`` if the file does not, may load ``extra`` optional
policy files, and says what to ``expect`` (``allow``/``deny``) and, optionally, which
``policies`` must be among those that decided.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.policy.engine import PolicySet, load

RESOURCE_TYPES = {"release": "ImageClass", "infer": "ImageClass"}


@dataclass(frozen=True)
class CaseResult:
    file: str
    name: str
    passed: bool
    detail: str


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            _merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def run(directory: Path) -> list[CaseResult]:
    results: list[CaseResult] = []
    cache: dict[tuple[str, ...], PolicySet] = {}
    for path in sorted((directory / "tests").glob("*.json")):
        spec = json.loads(path.read_text())
        for case in spec["cases"]:
            extra = tuple(case.get("extra", ()))
            if extra not in cache:
                cache[extra] = load(directory, [directory / e for e in extra])
            action = case.get("action", spec.get("action"))
            context = _merge(
                spec.get("defaults", {}),
                {
                    k: v
                    for k, v in case.items()
                    if k not in ("name", "action", "extra", "expect", "policies")
                },
            )
            verdict = cache[extra].evaluate(
                [
                    {
                        "action": action,
                        "resource_type": RESOURCE_TYPES.get(action, "AccessRequest"),
                        "resource": "case",
                        "context": context,
                    }
                ]
            )[0]
            got = "allow" if verdict.allowed else "deny"
            missing = [p for p in case.get("policies", []) if p not in verdict.policy_ids]
            passed = got == case["expect"] and not missing
            detail = (
                f"expected {case['expect']}, got {got} by {', '.join(verdict.policy_ids) or '-'}"
            )
            if missing:
                detail += f"; expected policies {', '.join(missing)} among them"
            results.append(CaseResult(path.name, case["name"], passed, detail))
    return results
