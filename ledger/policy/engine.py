"""The Cedar policy engine wrapper: load, validate, identify, evaluate, explain.

* A policy set is the ``*.cedar`` files of a directory (not ``optional/``), validated
  against ``schema.cedarschema`` when loaded; a broken file is refused with its name and
  line, and whoever holds the previous set keeps using it.
* Its identity is the SHA-256 over the schema and the files' names and contents, so a
  decision records exactly which rules took it.
* Evaluation fails closed: any Cedar error, and any answer that is not Allow, is a deny;
  a denial names the policies that fired (``@id``) and their ``@reason`` in plain words.

Pure module: no database, no web framework.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cedarpy

SCHEMA_FILE = "schema.cedarschema"
NAMESPACE = "Ledger"


class PolicyError(ValueError):
    """A policy set that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Rule:
    id: str
    reason: str
    effect: str


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    policy_ids: tuple[str, ...]
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class PolicySet:
    hash: str
    files: tuple[str, ...]
    rules: dict[str, Rule]  # cedar's positional id (policy0...) → rule
    cedar: Any
    schema: Any

    def evaluate(self, requests: Sequence[Mapping[str, Any]]) -> list[Verdict]:
        """Decide a batch; each request is (action, resource id, context)."""
        batch = [
            {
                "principal": {"type": f"{NAMESPACE}::Pipeline", "id": str(r.get("principal", "p"))},
                "action": {"type": f"{NAMESPACE}::Action", "id": r["action"]},
                "resource": {
                    "type": f"{NAMESPACE}::{r['resource_type']}",
                    "id": str(r["resource"]),
                },
                "context": r["context"],
            }
            for r in requests
        ]
        try:
            results = cedarpy.is_authorized_batch(batch, self.cedar, [], self.schema)
        except Exception as exc:  # the engine itself failed: everything is denied
            reason = f"policy evaluation failed ({type(exc).__name__}); denied"
            return [Verdict(False, ("engine-error",), (reason,)) for _ in requests]
        return [self._verdict(result) for result in results]

    def _verdict(self, result: Any) -> Verdict:
        # In policy-file order: Cedar reports them as a set, and a reason key that changed
        # order between evaluations would split one reason's counts in two.
        fired = set(result.diagnostics.reasons)
        rules = [rule for key, rule in self.rules.items() if key in fired]
        if result.diagnostics.errors:
            return Verdict(
                False,
                ("evaluation-error", *[r.id for r in rules]),
                ("a policy could not be evaluated; denied", *[r.reason for r in rules]),
            )
        allowed = result.decision == cedarpy.Decision.Allow
        if not allowed and not rules:
            return Verdict(False, ("no-permit",), ("no policy permits it",))
        return Verdict(allowed, tuple(r.id for r in rules), tuple(r.reason for r in rules))


def _line(text: str) -> int:
    """The line where the first unparseable policy starts (cedarpy reports no position):
    parse statement by statement and return the first failing one's first code line."""
    offset = 0
    for chunk in text.split(";"):
        start = offset
        offset += len(chunk) + 1
        if not chunk.strip() or _comment_only(chunk):
            continue
        try:
            cedarpy.policies_to_json_str(chunk + ";")
        except Exception:
            lead = len(chunk) - len(chunk.lstrip())
            line = text.count("\n", 0, start + lead) + 1
            for code_line in chunk.lstrip().splitlines():
                if code_line.strip() and not code_line.strip().startswith("//"):
                    break
                line += 1
            return line
    return text.count("\n") + 1


def _comment_only(chunk: str) -> bool:
    return all(not ln.strip() or ln.strip().startswith("//") for ln in chunk.splitlines())


def _rules_of(text: str, name: str) -> list[Rule]:
    try:
        parsed = json.loads(cedarpy.policies_to_json_str(text))
    except Exception as exc:  # cedarpy raises plain errors with the parser's message
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PolicyError(f"{name}: line {_line(text)}: {message}") from exc
    rules = []
    for key in sorted(
        parsed.get("staticPolicies", {}), key=lambda k: int(k.removeprefix("policy"))
    ):
        policy = parsed["staticPolicies"][key]
        annotations = policy.get("annotations", {})
        if "id" not in annotations:
            raise PolicyError(f"{name}: every policy needs an @id annotation ({key} has none)")
        rules.append(
            Rule(annotations["id"], annotations.get("reason", annotations["id"]), policy["effect"])
        )
    return rules


def load(directory: Path, extra: Sequence[Path] = ()) -> PolicySet:
    """Load and validate the policy set in ``directory`` (plus ``extra`` files)."""
    schema_path = directory / SCHEMA_FILE
    if not schema_path.exists():
        raise PolicyError(f"{schema_path}: the Cedar schema is missing")
    files = sorted(directory.glob("*.cedar")) + list(extra)
    if not files:
        raise PolicyError(f"{directory}: no *.cedar policy files")
    schema_text = schema_path.read_text()
    digest = hashlib.sha256(b"schema\0" + schema_text.encode())
    texts: list[str] = []
    rules: list[Rule] = []
    for path in files:
        text = path.read_text()
        rules.extend(_rules_of(text, path.name))
        texts.append(text)
        digest.update(f"\0{path.name}\0".encode() + text.encode())
    ids = [r.id for r in rules]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise PolicyError(f"duplicate policy @id: {', '.join(duplicates)}")
    combined = "\n".join(texts)
    try:
        schema = cedarpy.Schema.from_str(schema_text)
    except Exception as exc:
        raise PolicyError(f"{SCHEMA_FILE}: {str(exc).splitlines()[0]}") from exc
    result = cedarpy.validate_policies(combined, schema)
    if not result.validation_passed:
        first = result.errors[0]
        raise PolicyError(f"policy set does not match the schema: {first}")
    return PolicySet(
        hash=digest.hexdigest(),
        files=tuple(p.name for p in files),
        rules={f"policy{i}": rule for i, rule in enumerate(rules)},
        cedar=cedarpy.PolicySet.from_str(combined),
        schema=schema,
    )


def default_directory() -> Path:
    """``policies/`` next to the package (installed wheel) or at the repository root."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "policies", here.parent / "policies"):
        if (candidate / SCHEMA_FILE).exists():
            return candidate
    raise PolicyError("the policies/ directory was not found next to the package")
