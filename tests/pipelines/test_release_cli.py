"""The release commands (pipelines.release_cli) end to end on a real MLflow store: promote,
rollback, bundle and the registry's list, show, history, pull; exit statuses and one-line
errors as the main CLI gives them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from components.release import signing
from pipelines import release_cli
from tests.components.release.tracked import MODEL_NAME, tracked_store

GATED = "nucleo-f746zg"  # the runs' gate: passed for good and worse, failed for failed
OTHER = "other"  # passed for every run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tracked_store(tmp_path_factory)


def device_file(folder: Path, name: str) -> str:
    path = folder / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "board": "B",
                "mcu": "M",
                "core": "cortex-m7",
                "clock_mhz": 216,
                "sram_bytes": 327680,
                "flash_bytes": 1048576,
            }
        )
    )
    return str(path)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = release_cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_promote_rollback_and_the_registry_commands(store, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    device = device_file(tmp_path, GATED)
    common = ("--device", device, "--registry", str(tmp_path / "registry"))
    good, worse, failed = (store.versions[n] for n in ("good", "worse", "failed"))

    status, out, _ = run(capsys, "promote", MODEL_NAME, good, *common, "--actor", "alice")
    assert status == 0 and f"{MODEL_NAME} {good} is now production on {GATED}" in out
    status, _, err = run(capsys, "promote", MODEL_NAME, worse, *common)
    assert status == 1 and err.startswith("tflm-pipelines: error: refused to promote")
    assert "regresses from production version" in err and err.count("\n") == 1
    status, _, err = run(capsys, "promote", MODEL_NAME, worse, *common, "--force")
    assert status == 1 and "needs a reason" in err
    status, out, _ = run(
        capsys, "promote", MODEL_NAME, worse, *common, "--force", "--reason", "smaller arena"
    )
    assert status == 0 and "(forced)" in out
    status, _, err = run(capsys, "promote", MODEL_NAME, failed, *common)
    assert status == 1 and f"the gate did not pass for '{GATED}'" in err

    status, out, _ = run(capsys, "registry", "list", "--registry", str(tmp_path / "registry"))
    assert status == 0 and f"| {MODEL_NAME} | {GATED} | production | {worse} |" in out
    status, out, _ = run(capsys, "rollback", MODEL_NAME, *common, "--reason", "field reports")
    assert status == 0 and f"is production on {GATED} again (was {worse})" in out
    alias = MlflowClient(store.uri).get_model_version_by_alias(MODEL_NAME, f"{GATED}-production")
    assert str(alias.version) == good

    status, out, _ = run(capsys, "registry", "history", "--registry", str(tmp_path / "registry"))
    rows = [line for line in out.splitlines()[2:] if line.startswith("| ")]
    assert status == 0 and len(rows) == 3
    assert "| yes | smaller arena |" in rows[1] and "| rollback |" in rows[2]
    assert "| alice |" in rows[0]
    status, out, _ = run(
        capsys, "registry", "show", device, "--registry", str(tmp_path / "registry")
    )
    assert status == 0 and "| int8 accuracy | 0.9000 |" in out and "tflite-micro" in out
    pulled = tmp_path / "pulled"
    status, out, _ = run(
        capsys,
        "registry",
        "pull",
        GATED,
        "--to",
        str(pulled),
        "--registry",
        str(tmp_path / "registry"),
    )
    assert status == 0 and "file hashes verified" in out
    assert (pulled / "manifest.json").is_file() and (pulled / "model_data.cc").is_file()


def test_a_signed_bundle_is_promoted_and_pulled_with_its_key(store, tmp_path, capsys):
    key, public = tmp_path / "k.pem", tmp_path / "k.pub"
    signing.generate_key_pair(key, public)
    signing.generate_key_pair(tmp_path / "o.pem", tmp_path / "o.pub", signing.ECDSA_P256)
    device, folder = device_file(tmp_path, OTHER), tmp_path / "bundle"
    good = store.versions["good"]
    uri = ("--tracking-uri", store.uri)
    status, out, _ = run(
        capsys,
        "bundle",
        MODEL_NAME,
        good,
        "--device",
        device,
        "--to",
        str(folder),
        "--key",
        str(key),
        *uri,
    )
    assert status == 0 and "(signed)" in out and (folder / "manifest.sig").is_file()
    registry = ("--registry", str(tmp_path / "registry"))
    status, _, err = run(
        capsys,
        "promote",
        MODEL_NAME,
        store.versions["worse"],
        "--device",
        device,
        "--bundle",
        str(folder),
        *registry,
        *uri,
    )
    assert status == 1 and f"holds {MODEL_NAME} {good}, not" in err
    status, out, _ = run(
        capsys,
        "promote",
        MODEL_NAME,
        good,
        "--device",
        device,
        "--bundle",
        str(folder),
        "--public-key",
        str(public),
        *registry,
        *uri,
    )
    assert status == 0 and f"is now production on {OTHER}" in out
    status, out, _ = run(
        capsys,
        "registry",
        "pull",
        OTHER,
        "--to",
        str(tmp_path / "ok"),
        "--public-key",
        str(public),
        *registry,
    )
    assert status == 0 and "signature and" in out
    status, _, err = run(
        capsys,
        "registry",
        "pull",
        OTHER,
        "--to",
        str(tmp_path / "no"),
        "--public-key",
        str(tmp_path / "o.pub"),
        *registry,
    )
    assert status == 1 and "not by the trusted key" in err and not (tmp_path / "no").exists()


def test_missing_inputs_are_one_line_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    device = device_file(tmp_path, OTHER)
    registry = ("--registry", str(tmp_path / "registry"))
    status, _, err = run(capsys, "promote", MODEL_NAME, "1", "--device", device, *registry)
    assert status == 1 and "an MLflow tracking URI is needed" in err
    status, _, err = run(capsys, "promote", MODEL_NAME, "1", "--device", "nowhere", *registry)
    assert status == 1 and "device 'nowhere': no such file" in err
    status, _, err = run(capsys, "rollback", MODEL_NAME, "--device", OTHER, *registry)
    assert status == 1 and "never been promoted" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["promote", "m", "1"],
        ["registry"],
        ["rollback", "m"],
        ["promote", "m", "1", "--device", "d", "--stage", "qa"],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        release_cli.main(argv)
    assert exit_.value.code == 2 and "usage: tflm-pipelines" in capsys.readouterr().err


def test_add_parsers_fits_the_main_cli(capsys):
    """What pipelines.cli does with the module: its subparsers, then COMMANDS[command]."""
    parser = argparse.ArgumentParser(prog="tflm-pipelines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    release_cli.add_parsers(sub)
    assert set(sub.choices) == set(release_cli.COMMANDS)
    args = parser.parse_args(["registry", "pull", "board", "--to", "x"])
    assert release_cli.COMMANDS[args.command] is release_cli.registry
    assert (args.registry, args.stage, args.registry_command) == (
        "runs/registry",
        "production",
        "pull",
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["promote", "--help"])
    assert "--force" in capsys.readouterr().out


def test_once_wired_the_main_cli_runs_them(tmp_path, capsys):
    from pipelines import cli

    if "promote" not in cli._COMMANDS:
        pytest.skip("pipelines.cli does not dispatch to release_cli yet")
    assert cli.main(["registry", "list", "--registry", str(tmp_path / "r")]) == 0
    assert "| model | device | stage |" in capsys.readouterr().out
