"""The lean ``ledger deid`` path: the arguments it takes mean what they mean to typer, it
gives every other argument list to typer, and a batch through it loads neither typer nor
pydantic yet prints what the typer command prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ledger.cli import app, deid_run, main
from ledger.cli.deid_argv import parse
from ledger.cli.deid_run import DeidArgs
from tests.images.dicom_factory import ct_dataset, write

runner = CliRunner()

TAKEN = [
    ["in", "out"],
    ["in", "out", "--key", "k.key"],
    ["--key=k.key", "in", "out"],
    ["in", "--json", "out", "--jobs", "1"],
    ["in", "out", "--jobs=0", "--create-key"],
    ["in", "out", "--jobs", "12"],
    ["in", "out", "--basic", "--scope", "grant-7"],
    ["in", "out", "--scope=a b", "--burned-in", "mask"],
    ["in", "out", "--burned-in=quarantine"],
    ["in", "out", "--option", "clean_descriptors"],
    ["in", "out", "--option", "retain_device_identity", "--option=clean_graphics"],
    ["in", "out", "--option", "no_such_option"],  # run() names it: a usage error, exit 2
    ["dir with spaces/in", "./out", "--key", "../keys/deid.key"],
]

DECLINED = [
    [],
    ["--help"],
    ["in", "out", "--help"],
    ["in"],
    ["in", "out", "more"],
    ["", "out"],
    ["-", "out"],
    ["--", "in", "out"],
    ["in", "out", "-h"],
    ["in", "out", "--bogus"],
    ["in", "out", "--key"],
    ["in", "out", "--key="],
    ["in", "out", "--key", "-k"],
    ["in", "out", "--key", "a", "--key", "b"],
    ["in", "out", "--json", "--json"],
    ["in", "out", "--json=yes"],
    ["in", "out", "--jobs", "-1"],
    ["in", "out", "--jobs", "two"],
    ["in", "out", "--jobs", "02"],
    ["in", "out", "--jobs", "1_0"],
    ["in", "out", "--burned-in", "Mask"],
    ["in", "out", "--burned-in", "blur"],
    ["in", "out", "--no-create-key"],
]


def typer_args(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> DeidArgs:
    """What the typer command hands to ``run`` for ``ledger deid ARGV``."""
    seen: list[DeidArgs] = []
    monkeypatch.setattr("ledger.cli.deid.run", seen.append)
    result = runner.invoke(app, ["deid", *argv])
    assert result.exit_code == 0, result.output
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize("argv", TAKEN, ids=" ".join)
def test_the_lean_parser_reads_what_typer_reads(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lean = parse(argv)
    assert lean is not None
    theirs = typer_args(argv, monkeypatch)
    assert lean == DeidArgs(
        **{**vars(theirs), "option": list(theirs.option) if theirs.option else None}
    )
    assert type(lean.burned_in) is type(theirs.burned_in)


@pytest.mark.parametrize("argv", DECLINED, ids=" ".join)
def test_anything_else_is_left_to_typer(argv: list[str]) -> None:
    assert parse(argv) is None


def test_help_and_errors_come_from_typer(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    for argv, code in ((["--help"], 0), (["in", "out", "--jobs", "x"], 2), (["in"], 2)):
        monkeypatch.setattr(sys, "argv", ["ledger", "deid", *argv])
        with pytest.raises(SystemExit) as exit_:
            main()
        assert exit_.value.code == code
        captured = capsys.readouterr()
        assert "deid [OPTIONS]" in captured.out + captured.err


def test_usage_errors_exit_2_on_the_lean_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    write(ct_dataset("MRN-1"), tmp_path / "in" / "1.dcm")
    cases = [
        (["in", "out", "--key", "none.key"], "no key file"),
        (["missing", "out", "--key", "k.key"], "does not exist"),
        (["in", "out", "--key", "k.key", "--option", "nope"], "unknown option"),
        (["in", "in/out", "--key", "k.key"], "must not be inside"),
    ]
    (tmp_path / "k.key").write_bytes(b"k" * 32)
    monkeypatch.chdir(tmp_path)
    for argv, message in cases:
        assert parse(argv) is not None
        monkeypatch.setattr(sys, "argv", ["ledger", "deid", *argv])
        with pytest.raises(SystemExit) as exit_:
            main()
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _folder(tmp_path: Path) -> tuple[Path, Path]:
    for i in range(3):
        write(ct_dataset(f"MRN-{i}", seed=i), tmp_path / "in" / f"{i}.dcm")
    (tmp_path / "in" / "notes.txt").write_text("not dicom")
    key = tmp_path / "k.key"
    key.write_bytes(b"k" * 32)
    return tmp_path / "in", key


def test_a_batch_on_the_lean_path_loads_no_typer_and_prints_what_typer_prints(
    tmp_path: Path,
) -> None:
    src, key = _folder(tmp_path)
    script = (
        "import json, sys\n"
        f"sys.argv = ['ledger', 'deid', {str(src)!r}, {str(tmp_path / 'lean')!r}, "
        f"'--key', {str(key)!r}, '--json', '--jobs', '1']\n"
        "from ledger.cli import main\n"
        "main()\n"
        "print(json.dumps(sorted({m.partition('.')[0] for m in sys.modules})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    *lines, modules = done.stdout.splitlines()
    loaded = set(json.loads(modules))
    assert loaded & {"typer", "click", "pydantic", "sqlalchemy", "cryptography"} == set()
    assert "pydicom" in loaded
    lean = json.loads("\n".join(lines))

    result = runner.invoke(
        app, ["deid", str(src), str(tmp_path / "typer"), "--key", str(key), "--json"]
    )
    assert result.exit_code == 0, result.output
    theirs = json.loads(result.output)
    for summary in (lean, theirs):
        summary.pop("seconds")
    assert lean == theirs
    assert lean["written"] == 3
    assert lean["skipped"] == 1
    written = sorted(p.name for p in (tmp_path / "lean").iterdir())
    assert written == sorted(p.name for p in (tmp_path / "typer").iterdir())
    for name in written:
        ours = (tmp_path / "lean" / name).read_bytes()
        assert ours == (tmp_path / "typer" / name).read_bytes()


def test_the_printed_summary_is_the_same_on_both_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    src, key = _folder(tmp_path)
    monkeypatch.setattr(deid_run.time, "perf_counter", lambda: 1.0)  # elapsed 0.0 s
    argv = [str(src), str(tmp_path / "lean"), "--key", str(key)]
    monkeypatch.setattr(sys, "argv", ["ledger", "deid", *argv])
    main()
    lean = capsys.readouterr().out
    result = runner.invoke(app, ["deid", str(src), str(tmp_path / "typer"), "--key", str(key)])
    assert result.exit_code == 0
    assert lean == result.output
    assert "3 written" in lean


def test_ctrl_c_on_the_lean_path_exits_130_as_typer_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(args: DeidArgs) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(deid_run, "run", interrupted)
    monkeypatch.setattr(sys, "argv", ["ledger", "deid", "in", "out"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 130
    monkeypatch.setattr("ledger.cli.deid.run", interrupted)
    assert runner.invoke(app, ["deid", "in", "out"]).exit_code == 130
