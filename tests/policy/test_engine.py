"""The policy set: its own test cases pass, broken sets are refused, errors deny."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ledger.cli import app
from ledger.policy import cases
from ledger.policy.engine import PolicyError, default_directory, load


def test_packaged_policy_cases_pass() -> None:
    results = cases.run(default_directory())
    assert len(results) >= 20
    assert [r for r in results if not r.passed] == []


def test_hash_identifies_the_set(tmp_path: Path) -> None:
    copy = tmp_path / "policies"
    shutil.copytree(default_directory(), copy)
    first = load(copy).hash
    assert load(copy).hash == first
    (copy / "release.cedar").write_text((copy / "release.cedar").read_text() + "\n// note\n")
    assert load(copy).hash != first


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    copy = tmp_path / "policies"
    shutil.copytree(default_directory(), copy)
    return copy


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '// header\n@id("ok")\npermit (principal, action, resource);\n\n'
            '@id("x")\npermit (principal, action, resource) when { 1 + };\n',
            "broken.cedar: line 5: unexpected token",
        ),
        ("permit (principal, action, resource);\n", "needs an @id"),
        (
            '@id("burned-in-annotation-never-released")\npermit (principal, action, resource);\n',
            "duplicate policy @id",
        ),
        (
            '@id("typo")\npermit (principal, action == Ledger::Action::"release", resource)\n'
            "when { context.consent.permited };\n",
            "does not match the schema",
        ),
    ],
)
def test_broken_sets_are_refused_with_file_and_line(
    policies: Path, text: str, message: str
) -> None:
    (policies / "broken.cedar").write_text(text)
    with pytest.raises(PolicyError, match=message):
        load(policies)


def test_missing_schema_is_refused(policies: Path) -> None:
    (policies / "schema.cedarschema").unlink()
    with pytest.raises(PolicyError, match="schema is missing"):
        load(policies)


def test_a_context_the_schema_rejects_is_a_deny() -> None:
    loaded = load(default_directory())
    verdict = loaded.evaluate(
        [
            {
                "action": "release",
                "resource_type": "ImageClass",
                "resource": "c",
                "context": {"consent": {"permitted": True}},
            }
        ]
    )[0]
    assert not verdict.allowed


def test_cli_validate_and_test(policies: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["policy", "validate", "--dir", str(policies), "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["policy", "test", "--dir", str(policies)])
    assert r.exit_code == 0, r.output
    (policies / "release.cedar").write_text(
        (policies / "release.cedar").read_text().replace('"NCU"', '"XXX"')
    )
    r = runner.invoke(app, ["policy", "test", "--dir", str(policies)])
    assert r.exit_code == 1
    assert "FAIL" in r.output
    (policies / "bad.cedar").write_text("permit (")
    r = runner.invoke(app, ["policy", "validate", "--dir", str(policies)])
    assert r.exit_code == 1
    assert "bad.cedar" in r.output
