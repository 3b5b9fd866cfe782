"""The command line: help texts, validation, usage errors and the installed entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import cli

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "tflm-pipelines"


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["validate", "--help"]])
def test_help_is_useful(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(args)
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: tflm-pipelines" in out
    if args[0] == "run":
        assert "--set KEY=VALUE" in out and "--tracking-uri" in out and "Beam" in out


def test_validate_prints_the_resolved_config(capsys):
    assert cli.main(["validate", str(REPO / "configs/kws.yaml"), "--set", "train.epochs=2"]) == 0
    out = capsys.readouterr().out
    assert "epochs: 2" in out and "nucleo_l4r5zi" in out


def test_validate_refuses_a_bad_config_with_one_line(capsys, tmp_path):
    assert cli.main(["validate", str(tmp_path / "missing.yaml")]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("tflm-pipelines: error:") and "missing.yaml" in err


def test_unknown_options_are_only_for_run():
    with pytest.raises(SystemExit) as exit_:
        cli.main(["validate", str(REPO / "configs/kws.yaml"), "--direct_num_workers=2"])
    assert exit_.value.code == 2


def test_rules_table_lists_the_gate(capsys):
    assert cli.main(["rules"]) == 0
    assert "| `accuracy` |" in capsys.readouterr().out


@pytest.mark.skipif(not SCRIPT.exists(), reason="package not installed in this environment")
def test_console_script_is_installed():
    done = subprocess.run([SCRIPT, "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "run" in done.stdout
