"""Config loading: the shipped configs validate; every kind of mistake is named precisely."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines import config
from pipelines.errors import PipelineError

REPO = Path(__file__).resolve().parents[2]
KWS = REPO / "configs" / "kws.yaml"


def write(tmp_path: Path, data: dict, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def minimal(tmp_path: Path, **extra) -> dict:
    device = yaml.safe_load((REPO / "configs/devices/rpi_pico.yaml").read_text())
    (tmp_path / "board.yaml").write_text(yaml.safe_dump(device))
    return {"devices": ["board.yaml"], **extra}


def test_default_config_loads_into_frozen_objects():
    cfg = config.load(KWS)
    assert cfg.features.frontend == "mfcc"
    assert [d.name for d in cfg.devices][0] == "nucleo_l4r5zi"
    with pytest.raises((TypeError, ValueError, AttributeError)):
        cfg.train.epochs = 1


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "devices").glob("*.yaml")))
def test_every_device_file_is_valid(path):
    device = config._DEVICE.validate_python(yaml.safe_load(path.read_text()))
    assert device.sram_budget_bytes < device.sram_bytes
    assert path.stem == device.name


def test_overrides_are_typed_and_nested():
    cfg = config.load(KWS, ["train.epochs=3", "gate.min_accuracy=0.5", "features.frontend=micro"])
    assert (cfg.train.epochs, cfg.gate.min_accuracy, cfg.features.frontend) == (3, 0.5, "micro")


def test_unknown_key_names_file_and_key(tmp_path):
    path = write(tmp_path, minimal(tmp_path, train={"epochs": 2, "epochz": 3}))
    with pytest.raises(PipelineError, match=r"cfg\.yaml: key 'train\.epochz'"):
        config.load(path)


def test_unknown_override_is_refused():
    with pytest.raises(PipelineError, match=r"key 'train\.learning_rat'"):
        config.load(KWS, ["train.learning_rat=0.1"])


def test_wrong_type_says_what_was_expected(tmp_path):
    path = write(tmp_path, minimal(tmp_path, train={"epochs": "many"}))
    with pytest.raises(PipelineError, match=r"key 'train\.epochs'.*integer.*'many'"):
        config.load(path)


def test_missing_config_file():
    with pytest.raises(PipelineError, match="nope.yaml: config file not found"):
        config.load("nope.yaml")


def test_missing_device_file_is_named(tmp_path):
    path = write(tmp_path, {"devices": ["devices/absent.yaml"]})
    with pytest.raises(PipelineError, match=r"absent\.yaml: config file not found"):
        config.load(path)


def test_bad_device_file_names_device_file_and_key(tmp_path):
    (tmp_path / "board.yaml").write_text(
        "name: b\nboard: B\nmcu: m\ncore: c\nclock_mhz: -1\nsram_bytes: 1\nflash_bytes: 1\n"
    )
    path = write(tmp_path, {"devices": ["board.yaml"]})
    with pytest.raises(PipelineError, match=r"board\.yaml: key 'clock_mhz'"):
        config.load(path)


def test_speech_commands_source_needs_an_existing_folder(tmp_path):
    data = {"source": "speech_commands", "path": str(tmp_path / "missing")}
    path = write(tmp_path, minimal(tmp_path, data=data))
    with pytest.raises(PipelineError, match=r"key 'data'.*missing' is not a folder"):
        config.load(path)


def test_no_device_is_refused(tmp_path):
    with pytest.raises(PipelineError, match="key 'devices'"):
        config.load(write(tmp_path, {"devices": []}))


def test_malformed_override():
    with pytest.raises(PipelineError, match="expected key=value"):
        config.load(KWS, ["train.epochs"])


VWW = REPO / "configs" / "vww.yaml"


def test_the_pipeline_key_picks_the_pipeline():
    kws, vww = config.load(KWS), config.load(VWW)
    assert (type(kws).__name__, type(vww).__name__) == ("KwsConfig", "VwwConfig")
    assert vww.train.architecture == "plain_cnn" and vww.images.image_size == (96, 96)
    assert vww.train.model["filters"] == 8 and vww.train.augment is not None
    assert vww.train.pair_batches and vww.prune.pair_batches and vww.data.synth.paired


def test_prune_batches_as_training_unless_told_otherwise():
    assert not config.load(VWW, ["train.pair_batches=false"]).prune.pair_batches
    own = config.load(VWW, ["train.pair_batches=false", "prune.pair_batches=true"])
    assert own.prune.pair_batches and not own.train.pair_batches
    assert not config.load(KWS).prune.pair_batches
    assert config.load(VWW).prune.batch_size == 32
    assert config.load(VWW, ["train.batch_size=16"]).prune.batch_size == 16
    assert config.load(VWW, ["train.fused_batch_norm=true"]).prune.fused_batch_norm
    assert not config.load(KWS).prune.fused_batch_norm
    assert config.load(VWW, ["train.batch_size=16", "prune.batch_size=64"]).prune.batch_size == 64


def test_a_config_without_the_pipeline_key_is_kws(tmp_path):
    assert config.load(write(tmp_path, minimal(tmp_path))).pipeline == "kws"


def test_vww_keys_left_out_take_the_vww_recipe(tmp_path):
    cfg = config.load(write(tmp_path, minimal(tmp_path, pipeline="vww", train={"epochs": 2})))
    assert (cfg.train.architecture, cfg.train.schedule, cfg.train.epochs) == (
        "mobilenet_v1", "step", 2,
    )  # fmt: skip
    assert cfg.track.registered_model_name == "vww-mobilenet-v1"


def test_unknown_pipeline_and_unknown_model_option_are_named(tmp_path):
    with pytest.raises(PipelineError, match="pipeline"):
        config.load(write(tmp_path, minimal(tmp_path, pipeline="ocr")))
    bad = minimal(tmp_path, pipeline="vww", train={"model": {"alpha": 0.25, "alpah": 1}})
    with pytest.raises(PipelineError, match=r"key 'train'.*model\.alpah"):
        config.load(write(tmp_path, bad))


def test_image_sources_need_their_paths(tmp_path):
    data = {"source": "coco", "path": str(tmp_path)}
    with pytest.raises(PipelineError, match=r"key 'data'.*annotations"):
        config.load(write(tmp_path, minimal(tmp_path, pipeline="vww", data=data)))


def test_loading_a_config_imports_nothing_heavy():
    """``validate`` must answer at once: no TensorFlow, Beam, MLflow or matplotlib."""
    code = (
        "import sys; from pipelines import config; [config.load(p) for p in sys.argv[1:]];"
        "print(sorted(m for m in ('tensorflow', 'apache_beam', 'mlflow', 'matplotlib', 'keras')"
        " if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(KWS), str(VWW)], cwd=REPO,
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stdout.strip() == "[]"
