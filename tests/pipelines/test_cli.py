"""The command line: help texts, validation, usage errors and the installed entry point."""

from __future__ import annotations

import os
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


def test_profile_writes_table_chart_and_mlflow_run(tiny_int8_model, tmp_path, capsys):
    model = tmp_path / "tiny.tflite"
    model.write_bytes(tiny_int8_model)
    device = str(REPO / "configs/devices/rpi_pico.yaml")
    assert cli.main(["profile", str(model), "--device", device]) == 0
    out = capsys.readouterr().out
    assert "**peak**" in out and "TFLM arena:" in out and "activation peak fits" in out
    folder = tmp_path / "tiny.memory"
    assert {p.name for p in folder.iterdir()} >= {
        "memory.md",
        "memory.json",
        "memory_per_layer.png",
        "mlflow.db",
    }


def test_patch_writes_a_verified_smaller_model(inverted_residual_int8_model, tmp_path, capsys):
    model, out = tmp_path / "ir.tflite", tmp_path / "ir_patched.tflite"
    model.write_bytes(inverted_residual_int8_model)
    assert cli.main(["patch", str(model), "--output", str(out), "--verify-inputs", "3"]) == 0
    text = capsys.readouterr().out
    assert "| yes |" in text and "verified bit-exact on 3 inputs" in text
    assert out.is_file() and out.read_bytes() != model.read_bytes()


def test_patch_writes_beside_the_model_without_output(
    inverted_residual_int8_model, tmp_path, capsys
):
    model = tmp_path / "ir.tflite"
    model.write_bytes(inverted_residual_int8_model)
    device = str(REPO / "configs/devices/nucleo_l4r5zi.yaml")
    assert cli.main(["patch", str(model), "--device", device, "--verify-inputs", "2"]) == 0
    assert "ir_patched.tflite" in capsys.readouterr().out
    assert (tmp_path / "ir_patched.tflite").is_file()


def test_patch_tries_only_the_grids_given(inverted_residual_int8_model, tmp_path, capsys):
    model, out = tmp_path / "ir.tflite", tmp_path / "ir_patched.tflite"
    model.write_bytes(inverted_residual_int8_model)
    args = ["patch", str(model), "--output", str(out), "--grids", "2", "--verify-inputs", "2"]
    assert cli.main(args) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0].split("|")]
    cells = [[cell.strip() for cell in row.split("|")] for row in rows[2:]]
    grids = {c[header.index("grid")] for c in cells if c[header.index("mode")] != "stream"}
    assert grids <= {"2x2"}, rows  # streamed stages show strips, not grids
    assert all(c[header.index("grid")] == "2x2" or "strip" in c[header.index("grid")]
               or c[header.index("grid")] == "whole" for c in cells), rows  # fmt: skip


def test_patch_in_stream_mode_recomputes_nothing(inverted_residual_int8_model, tmp_path, capsys):
    model, out = tmp_path / "ir.tflite", tmp_path / "ir_streamed.tflite"
    model.write_bytes(inverted_residual_int8_model)
    args = ["patch", str(model), "--output", str(out), "--mode", "stream", "--verify-inputs", "2"]
    assert cli.main(args) == 0
    assert "verified bit-exact" in capsys.readouterr().out and out.is_file()


def test_patch_in_builtin_mode_reports_every_measured_split(
    inverted_residual_int8_model, tmp_path, capsys
):
    model, out = tmp_path / "ir.tflite", tmp_path / "ir_builtin.tflite"
    model.write_bytes(inverted_residual_int8_model)
    assert cli.main(["patch", str(model), "--output", str(out), "--mode", "builtin"]) == 0
    text = capsys.readouterr().out
    rows = [line.split("|") for line in text.splitlines() if line.startswith("| ")][2:]
    assert rows and all(int(row[5].replace(",", "")) > 0 for row in rows)  # measured arena
    assert ("not written" in text) != out.is_file()


@pytest.mark.parametrize("grids", ["2,x", "1,4", ""])
def test_patch_refuses_bad_grids_before_any_work(grids, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["patch", "m.tflite", "--output", str(tmp_path / "o"), "--grids", grids])
    assert exit_.value.code == 2
    assert "--grids" in capsys.readouterr().err


def test_patch_refuses_a_missing_model(tmp_path, capsys):
    missing = tmp_path / "none.tflite"
    assert cli.main(["patch", str(missing), "--output", str(tmp_path / "o")]) == cli.EXIT_ERROR
    assert "none.tflite: model file not found" in capsys.readouterr().err


def test_patch_with_the_row_reader_answers_as_the_original_on_whole_images(
    inverted_residual_int8_model, tmp_path, capsys
):
    """--row-reader: the written model's input is one row; fed whole images (through the
    host's row reader) it gives exactly the original's outputs."""
    import numpy as np

    import tflm_ext
    from tflm_ext.model_graph import read_graph

    model, out = tmp_path / "ir.tflite", tmp_path / "ir_rows.tflite"
    model.write_bytes(inverted_residual_int8_model)
    args = ["patch", str(model), "--output", str(out), "--row-reader", "--verify-inputs", "2"]
    assert cli.main(args) == 0
    assert "stream (row reader)" in capsys.readouterr().out
    graph = read_graph(out.read_bytes())
    assert graph.shape(graph.inputs[0]) == (1, 1, 32, 3)
    images = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
    before = tflm_ext.run_isolated(tflm_ext.run_batch, model.read_bytes(), images)
    after = tflm_ext.run_isolated(tflm_ext.run_batch, out.read_bytes(), images)
    np.testing.assert_array_equal(before.scores, after.scores)


def test_the_row_reader_is_refused_in_builtin_mode(inverted_residual_int8_model, tmp_path, capsys):
    model = tmp_path / "ir.tflite"
    model.write_bytes(inverted_residual_int8_model)
    args = ["patch", str(model), "--mode", "builtin", "--row-reader"]
    assert cli.main(args) == cli.EXIT_ERROR
    assert "row reader runs in the custom op" in capsys.readouterr().err


def test_the_pipeline_config_takes_the_row_reader(capsys):
    kws = str(REPO / "configs/kws.yaml")
    assert cli.main(["validate", kws, "--set", "patch.row_reader=true"]) == 0
    assert "row_reader: true" in capsys.readouterr().out
    refused = ["validate", kws, "--set", "patch.row_reader=true", "--set", "patch.mode=builtin"]
    assert cli.main(refused) == cli.EXIT_ERROR
    assert "row_reader: true needs mode custom or stream" in capsys.readouterr().err


def test_export_writes_a_firmware_folder(inverted_residual_int8_model, tmp_path, capsys):
    model, patched = tmp_path / "ir.tflite", tmp_path / "ir_patched.tflite"
    model.write_bytes(inverted_residual_int8_model)
    assert cli.main(["patch", str(model), "--output", str(patched), "--verify-inputs", "2"]) == 0
    assert cli.main(["export", str(patched), "--output", str(tmp_path / "fw")]) == 0
    out = capsys.readouterr().out
    assert "TFLM_EXT_PATCH_STAGE" in out and "reserve an arena of" in out
    files = {p.name for p in (tmp_path / "fw").rglob("*")}
    assert {"model_data.cc", "model_data.h", "op_resolver.h", "README.md"} <= files
    assert "patch_stage_op.cc" in files


def test_third_party_noise_stays_out_of_the_output():
    """Beam's BigQuery/apitools notices and TensorFlow's start-up lines only with --verbose."""
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "validate", str(REPO / "configs/vww.yaml")],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stderr == ""
    assert "pipeline: vww" in done.stdout


def test_tensorflow_start_up_lines_stay_out_unless_verbose():
    """TensorFlow's Abseil start-up lines ignore TF_CPP_MIN_LOG_LEVEL; the CLI hides them."""
    script = "from pipelines import cli; cli._configure_logging({}); import tensorflow"
    # a fresh environment: an in-process cli.main of an earlier test set the variable here
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet, verbose = (
        subprocess.run(
            [sys.executable, "-c", script.format(v)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stderr  # fmt: skip
        for v in (False, True)
    )
    assert "absl::InitializeLog" not in quiet and "oneDNN" not in quiet, quiet
    assert "absl::InitializeLog" in verbose  # what --verbose keeps, and what the test guards
