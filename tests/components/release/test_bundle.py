"""Release bundles: what a bundle holds, and verification that names the altered file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.artifacts import Preprocessing
from components.errors import ComponentError
from components.release import bundle as bd
from components.release import firmware_facts
from components.release.manifest import MANIFEST_NAME
from tests.components.release.conftest import DEVICE, candidate, copy_bundle


def test_bundle_holds_the_model_c_array_resolver_and_manifest(bundles, tiny_int8_model):
    b = bundles["1"]
    names = {p.name for p in b.folder.iterdir()}
    assert names == {
        "model.tflite",
        "model_data.cc",
        "model_data.h",
        "op_resolver.h",
        "README.md",
        MANIFEST_NAME,
    }
    assert (b.folder / "model.tflite").read_bytes() == tiny_int8_model
    assert "AddConv2D" in (b.folder / "op_resolver.h").read_text()
    assert f"{b.manifest.figures.arena_min} bytes" in (b.folder / "README.md").read_text()
    assert b.bundle_id == bd.sha256_file(b.folder / MANIFEST_NAME)
    assert not b.signed and bd.verify(b.folder).bundle_id == b.bundle_id


def test_a_patched_model_ships_its_kernels_and_custom_op_version(patched_bundle):
    m = patched_bundle.manifest
    assert [(c.name, c.version) for c in m.ops.custom] == [("TFLM_EXT_PATCH_STAGE", 1)]
    kernels = [f.path for f in m.files if f.path.startswith("kernels/")]
    assert "kernels/patch_stage.cc" in kernels and not any("/host/" in k for k in kernels)
    assert "AddCustom" in (patched_bundle.folder / "op_resolver.h").read_text()
    bd.verify(patched_bundle.folder, bundle_id=patched_bundle.bundle_id)


def test_tampering_with_a_file_is_detected_naming_it(bundles, tmp_path):
    folder = copy_bundle(bundles["1"], tmp_path / "b")
    data = bytearray((folder / "model_data.cc").read_bytes())
    data[-10] ^= 1
    (folder / "model_data.cc").write_bytes(bytes(data))
    with pytest.raises(ComponentError, match="file model_data.cc does not match its recorded"):
        bd.verify(folder)


def test_a_missing_or_unlisted_file_is_detected(bundles, tmp_path):
    folder = copy_bundle(bundles["1"], tmp_path / "b")
    (folder / "op_resolver.h").unlink()
    with pytest.raises(ComponentError, match="file op_resolver.h is missing"):
        bd.verify(folder)
    folder = copy_bundle(bundles["1"], tmp_path / "c")
    (folder / "extra.cc").write_text("int backdoor;")
    with pytest.raises(ComponentError, match="file extra.cc is not in the manifest"):
        bd.verify(folder)


def test_an_altered_manifest_is_detected_against_the_bundle_id(bundles, tmp_path):
    folder = copy_bundle(bundles["1"], tmp_path / "b")
    record = json.loads((folder / MANIFEST_NAME).read_text())
    record["figures"]["int8_accuracy"] = 0.99
    (folder / MANIFEST_NAME).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    with pytest.raises(ComponentError, match=r"manifest.json was altered: its SHA-256"):
        bd.verify(folder, bundle_id=bundles["1"].bundle_id)
    # the record alone is still a valid manifest: without a known id nothing tells
    assert bd.verify(folder).manifest.figures.int8_accuracy == 0.99


def test_a_folder_without_manifest_is_not_a_bundle(tmp_path):
    with pytest.raises(ComponentError, match="is not a bundle: cannot read manifest.json"):
        bd.verify(tmp_path)


def test_build_refuses_a_used_folder_and_leaves_nothing_on_failure(tiny_int8_model, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("x")
    c = candidate(tiny_int8_model, "9", 0.9, True)
    with pytest.raises(ComponentError, match="exists and is not empty"):
        bd.build(bd.BundleSpec(), c, DEVICE, used)
    wrong = candidate(tiny_int8_model, "9", 0.9, True)
    wrong = type(wrong)(**{**wrong.__dict__, "preprocessing": Preprocessing("audio", "mfcc")})
    with pytest.raises(ComponentError, match=r"produces \(49, 10, 1\) but the model's input"):
        bd.build(bd.BundleSpec(), wrong, DEVICE, tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["used"]


def test_created_by_comes_from_the_environment_unless_given(monkeypatch):
    monkeypatch.setenv(bd.USER_VARIABLE, "ci-bot")
    assert bd.current_user() == "ci-bot" and bd.current_user("alice") == "alice"
    monkeypatch.delenv(bd.USER_VARIABLE)
    monkeypatch.setenv("LOGNAME", "login-name")
    assert bd.current_user() == "login-name"


def test_preprocessing_parameters_describe_each_front_end():
    from components.audio import frontends

    for name, recipe in frontends.MFCC_RECIPES.items():
        mfcc = firmware_facts.preprocessing_parameters(Preprocessing("audio", name))
        assert (mfcc["window_samples"], mfcc["fft_length"]) == (recipe.window, recipe.fft)
        assert mfcc["peak_normalise"] is recipe.peak_normalise and mfcc["coefficients"] == 10
    micro = firmware_facts.preprocessing_parameters(Preprocessing("audio", "micro"))
    assert micro["step_ms"] == 10 and micro["pcan"]["strength"] == 0.95
    image = firmware_facts.preprocessing_parameters(Preprocessing("image", None, (96, 96), 3))
    assert image["color"] == "rgb" and image["output_shape"] == [96, 96, 3]
    with pytest.raises(ComponentError, match="no firmware description"):
        firmware_facts.preprocessing_parameters(Preprocessing("audio", "fbank"))


def test_the_c_name_must_be_an_identifier():
    with pytest.raises(ValueError, match="c_name"):
        bd.BundleSpec(c_name="not-an-identifier")


def test_hash_files_skips_the_manifest_and_signature(tmp_path: Path):
    (tmp_path / "a").write_text("a")
    (tmp_path / MANIFEST_NAME).write_text("{}")
    (tmp_path / bd.SIGNATURE_NAME).write_text("{}")
    assert [f.path for f in bd.hash_files(tmp_path)] == ["a"]


def test_a_row_reader_model_records_the_image_it_is_fed_and_ships_the_callback(
    tiny_int8_model, tmp_path
):
    """Its graph input is one row, but the application feeds the whole image through the
    row reader: the manifest says so, and the bundle holds the callback to implement."""
    from tflm_ext.rewrite import rewrite_stage

    model = rewrite_stage(tiny_int8_model, 0, 0, (1, 1), mode="reader")
    c = candidate(model, "6", 0.93, True)
    bundle = bd.build(bd.BundleSpec(created_by="builder"), c, DEVICE, tmp_path / "v6")
    assert bundle.manifest.preprocessing.input.shape == (1, 16, 16, 1)
    assert (bundle.folder / "row_reader.h").is_file()
    bd.verify(bundle.folder, bundle_id=bundle.bundle_id)
