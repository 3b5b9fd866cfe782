"""The manifest: its schema (published JSON Schema, checked with jsonschema), canonical bytes
and the round trip through JSON."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import fields, replace

import jsonschema
import pytest

from components.device import DeviceSpec, FirmwareSpec
from components.errors import ComponentError
from components.release import manifest as mf
from tests.components.release.conftest import DEVICE


def _record(bundles) -> dict:
    return json.loads((bundles["1"].folder / mf.MANIFEST_NAME).read_text())


def test_a_built_manifest_validates_against_the_published_schema(bundles):
    schema = mf.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(_record(bundles), schema, cls=jsonschema.Draft202012Validator)


def test_manifest_records_what_firmware_and_audit_need(bundles):
    record = _record(bundles)
    assert record["schema_version"] == mf.SCHEMA_VERSION == 1
    assert record["model"] == {"name": "tiny-classifier", "version": "1", "run_id": "run-1"}
    assert record["device"]["name"] == DEVICE.name and record["device"]["firmware"] is None
    figures = record["figures"]
    assert figures["arena_head"] > 0 and figures["arena_tail"] > 0
    assert figures["arena_head"] + figures["arena_tail"] == figures["arena_total"]
    assert figures["int8_accuracy"] == 0.9 and figures["macs"] == 6680
    assert figures["estimated_latency_ms"] == 0.13 and figures["host_latency_ms"] == 0.05
    assert record["ops"] == {
        "builtin": ["CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED"],
        "custom": [],
    }
    assert record["gate"]["device"] == DEVICE.name and record["gate"]["passed"] is True
    prep = record["preprocessing"]
    assert prep["kind"] == "image" and prep["image_size"] == [16, 16] and prep["channels"] == 1
    assert prep["input"]["dtype"] == "int8" and prep["input"]["shape"] == [1, 16, 16, 1]
    assert isinstance(prep["input"]["scale"], float) and "scale" in prep["parameters"]
    assert record["verified_with"]["tflite_micro"].startswith("0.dev")
    assert record["created_by"] == "builder" and record["created_at"].endswith("Z")
    paths = [f["path"] for f in record["files"]]
    assert paths == sorted(paths) and "model.tflite" in paths and mf.MANIFEST_NAME not in paths
    flash = next(f for f in record["files"] if f["path"] == "model.tflite")["size"]
    assert figures["flash_bytes"] == flash


def test_dumps_is_canonical_and_loads_round_trips(bundles):
    data = (bundles["1"].folder / mf.MANIFEST_NAME).read_bytes()
    manifest = mf.loads(data, "x.json")
    assert manifest == bundles["1"].manifest
    assert mf.dumps(manifest) == data
    assert data.endswith(b"}\n") and data.index(b'"created_at"') < data.index(b'"device"')


def test_a_firmware_section_round_trips(bundles):
    firmware = FirmwareSpec(
        name="fw 2",
        builtin_ops=("CONV_2D",),
        custom_ops=({"name": "TFLM_EXT_PATCH_STAGE", "versions": [1, 2]},),
    )
    device = DeviceSpec(
        **{**{f.name: getattr(DEVICE, f.name) for f in fields(DEVICE)}, "firmware": firmware}
    )
    changed = replace(bundles["1"].manifest, device=device)
    assert mf.loads(mf.dumps(changed), "x").device.firmware.custom_versions(
        "TFLM_EXT_PATCH_STAGE"
    ) == (1, 2)


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda r: r.pop("figures"), "(top level)"),
        (lambda r: r.update(schema_version=2), "schema_version"),
        (lambda r: r["files"][0].update(sha256="abc"), "files.0.sha256"),
        (lambda r: r["files"][0].update(path="../escape"), "files.0.path"),
        (lambda r: r["ops"]["builtin"].append("conv"), "ops.builtin.4"),
        (lambda r: r["figures"].update(int8_accuracy=1.5), "figures.int8_accuracy"),
        (lambda r: r.update(created_at="yesterday"), "created_at"),
        (lambda r: r.update(surprise=1), "(top level)"),
    ],
)
def test_the_schema_refuses_a_bad_manifest_naming_the_key(bundles, mutate, key):
    record = copy.deepcopy(_record(bundles))
    mutate(record)
    with pytest.raises(ComponentError, match=re.escape(f"bad.json: key '{key}'")):
        mf.validate(record, "bad.json")


def test_loads_refuses_what_is_not_json():
    with pytest.raises(ComponentError, match="m.json: not a JSON manifest"):
        mf.loads(b"\xff{", "m.json")


def test_the_schema_describes_every_field_the_records_hold(bundles):
    """The published schema and the code cannot drift apart: every key written is declared,
    and every DeviceSpec field has its place."""
    props = mf.schema()["properties"]
    record = _record(bundles)
    assert set(record) == set(props) == set(mf.schema()["required"])
    for section in ("model", "figures", "ops", "verified_with"):
        assert set(record[section]) == set(props[section]["properties"]), section
    assert {f.name for f in fields(DeviceSpec)} == set(props["device"]["properties"])
    assert {f.name for f in fields(mf.Figures)} == set(props["figures"]["properties"])
