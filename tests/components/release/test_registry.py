"""The device registry on its local backend: promotion, rollback and every refusal; pull."""

from __future__ import annotations

import itertools
import sqlite3
from dataclasses import fields, replace
from pathlib import Path

import pytest

from components.device import DeviceSpec
from components.errors import ComponentError
from components.release import promotion_rules, signing
from components.release.backend import RegistryBackend, Slot
from components.release.local_store import BUNDLES, DB_NAME, LocalBackend
from components.release.manifest import CustomOpVersion, ModelRef, OpSet
from components.release.promotion_rules import RegistrySpec
from components.release.registry import DeviceRegistry
from tests.components.release.conftest import (
    DEVICE,
    MODEL,
    OTHER_DEVICE,
    copy_bundle,
    with_manifest,
)

TICKS = itertools.count()


def clock() -> str:
    """Distinct, increasing times, so the history's order can be checked."""
    return f"2026-12-01T10:00:00.{next(TICKS):06d}Z"


def device_with(**firmware) -> DeviceSpec:
    values = {f.name: getattr(DEVICE, f.name) for f in fields(DEVICE)}
    return DeviceSpec(**{**values, "firmware": firmware})


@pytest.fixture
def registry(tmp_path: Path, bundles) -> DeviceRegistry:
    """A fresh registry holding versions 1 to 4."""
    reg = DeviceRegistry.local(tmp_path / "registry", clock=clock)
    for b in bundles.values():
        reg.add(b.folder)
    return reg


def ids(bundles) -> dict[str, str]:
    return {v: b.bundle_id for v, b in bundles.items()}


def test_the_local_backend_implements_the_interface(tmp_path):
    backend = LocalBackend(tmp_path)
    assert isinstance(backend, RegistryBackend)
    assert (tmp_path / DB_NAME).is_file() and (tmp_path / BUNDLES).is_dir()
    mode = sqlite3.connect(tmp_path / DB_NAME).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_bundles_are_stored_by_manifest_hash_once(registry, bundles):
    registry.add(bundles["1"].folder)
    stored = registry.backend.bundles()
    assert [b.version for b in stored] == ["1", "2", "3", "4"]
    root = registry.backend.root / BUNDLES
    assert sorted(p.name for p in root.iterdir()) == sorted(ids(bundles).values())
    assert not any((registry.backend.root / "tmp").iterdir())


def test_promote_then_rollback_restores_the_previous_production(registry, bundles):
    first = registry.promote(ids(bundles)["1"], actor="alice", reason="first release")
    second = registry.promote(ids(bundles)["2"], actor="bob")
    assert (second.previous_version, second.previous_bundle_id) == ("1", ids(bundles)["1"])
    assert registry.current(MODEL, DEVICE.name).version == "2"
    back = registry.rollback(MODEL, DEVICE.name, actor="carol", reason="field reports")
    assert (back.kind, back.version, back.previous_version) == ("rollback", "1", "2")
    assert registry.current(MODEL, DEVICE.name).bundle_id == ids(bundles)["1"]
    history = registry.history(MODEL, DEVICE.name, "production")
    assert [(a.id, a.kind, a.version, a.actor) for a in history] == [
        (first.id, "promote", "1", "alice"),
        (second.id, "promote", "2", "bob"),
        (back.id, "rollback", "1", "carol"),
    ]
    assert history[0].reason == "first release" and not any(a.forced for a in history)
    assert history[0].at < history[1].at < history[2].at


def test_rollback_walks_back_and_never_returns_to_a_rolled_back_version(registry, bundles):
    for version in ("1", "2"):
        registry.promote(ids(bundles)[version])
    registry.promote(ids(bundles)["3"], force=True, reason="smaller arena")
    assert registry.rollback(MODEL, DEVICE.name).version == "2"
    assert registry.rollback(MODEL, DEVICE.name).version == "1"
    with pytest.raises(ComponentError, match="nothing to roll back to: tiny-classifier 1 is"):
        registry.rollback(MODEL, DEVICE.name)
    assert len(registry.history()) == 5


def test_rollback_of_an_empty_slot_is_refused(registry):
    with pytest.raises(ComponentError, match="nothing to roll back: .* never been promoted"):
        registry.rollback(MODEL, DEVICE.name)
    with pytest.raises(ComponentError, match="stage 'prod'"):
        registry.rollback(MODEL, DEVICE.name, "prod")


def test_a_failed_gate_is_refused_even_when_forced(registry, bundles):
    message = r"the gate did not pass for 'board_a': accuracy \(accuracy detail\)"
    with pytest.raises(ComponentError, match=message):
        registry.promote(ids(bundles)["4"])
    with pytest.raises(ComponentError, match=message):
        registry.promote(ids(bundles)["4"], force=True, reason="ship it")
    assert registry.history() == ()


def test_a_bundle_without_a_gate_for_the_device_is_refused(registry, bundles, tmp_path):
    folder = with_manifest(bundles["1"], tmp_path / "b", gate=None, model=ModelRef(MODEL, "11"))
    bundle_id = registry.add(folder).bundle_id
    with pytest.raises(ComponentError, match="no gate report for device 'board_a'"):
        registry.promote(bundle_id)


def test_a_regression_is_refused_unless_forced_with_a_reason(registry, bundles):
    registry.promote(ids(bundles)["1"])
    with pytest.raises(ComponentError, match=r"0\.8000 regresses from production version 1 "):
        registry.promote(ids(bundles)["3"])
    with pytest.raises(ComponentError, match="a forced promotion needs a reason"):
        registry.promote(ids(bundles)["3"], force=True)
    forced = registry.promote(ids(bundles)["3"], force=True, reason="smaller arena, OK'd by QA")
    assert forced.forced and forced.reason == "smaller arena, OK'd by QA"
    assert registry.history()[-1] == forced


def test_the_tolerance_is_the_registry_spec(tmp_path, bundles):
    reg = DeviceRegistry.local(tmp_path / "r", spec=RegistrySpec(max_regression=0.2))
    for version in ("1", "3"):
        reg.add(bundles[version].folder)
    reg.promote(ids(bundles)["1"])
    assert not reg.promote(ids(bundles)["3"]).forced


def test_staging_is_a_slot_of_its_own_without_the_regression_rule(registry, bundles):
    registry.promote(ids(bundles)["2"])
    staged = registry.promote(ids(bundles)["3"], "staging")
    assert staged.previous_version is None
    assert registry.current(MODEL, DEVICE.name, "staging").version == "3"
    assert registry.current(MODEL, DEVICE.name).version == "2"
    with pytest.raises(ComponentError, match="stage 'canary': choose one of staging, production"):
        registry.promote(ids(bundles)["1"], "canary")


def test_a_tampered_stored_file_is_refused_naming_it(registry, bundles):
    stored = registry.backend.root / BUNDLES / ids(bundles)["2"] / "model_data.h"
    stored.write_text(stored.read_text().replace("g_model", "g_evil"))
    with pytest.raises(ComponentError, match="file model_data.h does not match its recorded"):
        registry.promote(ids(bundles)["2"])
    registry.promote(ids(bundles)["1"])
    registry.promote(ids(bundles)["3"], force=True, reason="to test the rollback check")
    stored = registry.backend.root / BUNDLES / ids(bundles)["1"] / "model.tflite"
    stored.write_bytes(stored.read_bytes()[:-1])
    with pytest.raises(ComponentError, match="file model.tflite does not match"):
        registry.rollback(MODEL, DEVICE.name)


def test_an_altered_stored_manifest_is_refused(registry, bundles):
    manifest = registry.backend.root / BUNDLES / ids(bundles)["2"] / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"builder"', '"someone else"'))
    with pytest.raises(ComponentError, match="manifest.json was altered: its SHA-256"):
        registry.promote(ids(bundles)["2"])


def test_an_op_the_firmware_lacks_is_refused(registry, bundles):
    lean = device_with(
        name="fw 1.0", builtin_ops=["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"]
    )
    with pytest.raises(
        ComponentError,
        match=r"firmware on 'board_a' \(fw 1.0\) does not provide "
        "AVERAGE_POOL_2D",
    ):
        registry.promote(ids(bundles)["1"], device=lean)
    full = device_with(
        builtin_ops=["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D"]
    )
    assert registry.promote(ids(bundles)["1"], device=full).version == "1"


def test_the_custom_op_and_its_version_must_be_in_the_firmware(registry, patched_bundle, tmp_path):
    patched = registry.add(patched_bundle.folder).bundle_id
    any_builtin = device_with(builtin_ops=None)
    with pytest.raises(ComponentError, match="does not provide custom op TFLM_EXT_PATCH_STAGE"):
        registry.promote(patched, device=any_builtin)
    v2_only = device_with(custom_ops=[{"name": "TFLM_EXT_PATCH_STAGE", "versions": [2]}])
    with pytest.raises(ComponentError, match="TFLM_EXT_PATCH_STAGE version 1 .the firmware has 2"):
        registry.promote(patched, device=v2_only)
    with_kernel = device_with(custom_ops=[{"name": "TFLM_EXT_PATCH_STAGE", "versions": [1, 2]}])
    assert registry.promote(patched, device=with_kernel).version == "5"
    newer = OpSet(
        patched_bundle.manifest.ops.builtin, (CustomOpVersion("TFLM_EXT_PATCH_STAGE", 3),)
    )
    folder = with_manifest(patched_bundle, tmp_path / "v6", ops=newer, model=ModelRef(MODEL, "6"))
    with pytest.raises(ComponentError, match="TFLM_EXT_PATCH_STAGE version 3"):
        registry.promote(registry.add(folder).bundle_id, device=with_kernel)


def test_a_bundle_for_another_device_is_refused(registry, bundles):
    with pytest.raises(ComponentError, match="built for device 'board_a', not 'board_b'"):
        registry.promote(ids(bundles)["1"], device=OTHER_DEVICE)


def test_promoting_the_current_bundle_or_an_unknown_one_is_refused(registry, bundles):
    registry.promote(ids(bundles)["1"])
    with pytest.raises(ComponentError, match="is already at production on board_a"):
        registry.promote(ids(bundles)["1"])
    with pytest.raises(ComponentError, match="is not in the registry: add it first"):
        registry.promote("0" * 64)


def test_pull_fetches_and_verifies_the_production_bundle(registry, bundles, tmp_path):
    registry.promote(ids(bundles)["2"])
    pulled = registry.pull(DEVICE.name, tmp_path / "device")
    assert pulled.manifest.model.version == "2" and pulled.bundle_id == ids(bundles)["2"]
    assert (tmp_path / "device" / "model.tflite").read_bytes() == (
        bundles["2"].folder / "model.tflite"
    ).read_bytes()
    with pytest.raises(ComponentError, match="not empty"):
        registry.pull(DEVICE.name, tmp_path / "device")
    with pytest.raises(ComponentError, match="no production bundle for device 'board_b'"):
        registry.pull(OTHER_DEVICE.name, tmp_path / "other")


def test_pull_of_a_tampered_bundle_leaves_nothing(registry, bundles, tmp_path):
    registry.promote(ids(bundles)["1"])
    (registry.backend.root / BUNDLES / ids(bundles)["1"] / "op_resolver.h").write_text("//")
    with pytest.raises(ComponentError, match="file op_resolver.h does not match"):
        registry.pull(DEVICE.name, tmp_path / "device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry"]


def test_two_models_on_one_device_need_the_model_named(registry, bundles, tmp_path):
    registry.promote(ids(bundles)["1"])
    folder = with_manifest(bundles["2"], tmp_path / "kws", model=ModelRef("kws", "1"))
    registry.promote(registry.add(folder).bundle_id)
    with pytest.raises(ComponentError, match=r"several models at production \(kws, tiny-"):
        registry.pull(DEVICE.name, tmp_path / "x")
    assert registry.pull(DEVICE.name, tmp_path / "y", model="kws").manifest.model.name == "kws"
    assert [(h.model, h.version) for h in registry.placements()] == [("kws", "1"), (MODEL, "1")]


def test_a_registry_that_trusts_a_key_refuses_unsigned_and_foreign_bundles(bundles, tmp_path):
    private, public = tmp_path / "k.pem", tmp_path / "k.pub"
    signing.generate_key_pair(private, public, signing.ECDSA_P256)
    signing.generate_key_pair(tmp_path / "o.pem", tmp_path / "o.pub")
    reg = DeviceRegistry.local(tmp_path / "r", public_key=public)
    with pytest.raises(ComponentError, match="is missing: the bundle is not signed"):
        reg.add(bundles["1"].folder)
    foreign = copy_bundle(bundles["1"], tmp_path / "foreign")
    signing.sign(foreign, tmp_path / "o.pem")
    with pytest.raises(ComponentError, match="not by the trusted key"):
        reg.add(foreign)
    signed = copy_bundle(bundles["1"], tmp_path / "signed")
    signing.sign(signed, private)
    stored = reg.add(signed)
    assert stored.signed and stored.bundle_id == bundles["1"].bundle_id
    reg.promote(stored.bundle_id)
    assert reg.pull(DEVICE.name, tmp_path / "device").signed


def test_append_is_a_compare_and_set_on_the_slot(registry, bundles):
    first = registry.promote(ids(bundles)["1"])
    stale = replace(first, id=None, bundle_id=ids(bundles)["2"], version="2")
    assert registry.backend.append(stale, expected_head=None) is None
    assert registry.backend.head(Slot(MODEL, DEVICE.name, "production")) == first
    stored = registry.backend.append(stale, expected_head=first.id)
    assert stored is not None and stored.id > first.id


def test_the_rules_table_comes_from_the_docstrings():
    table = promotion_rules.rules_table()
    assert "| `regression` |" in table and table.count("| no |") == 3


def test_a_device_file_declares_its_firmware(tmp_path):
    from pipelines.config import load_device
    from pipelines.errors import PipelineError

    text = (
        "name: fleet_board\nboard: B\nmcu: M\ncore: cortex-m4f\nclock_mhz: 64\n"
        "sram_bytes: 262144\nflash_bytes: 1048576\nfirmware:\n  name: fleet-fw 2.3.1\n"
        "  builtin_ops: [CONV_2D, FULLY_CONNECTED]\n"
        "  custom_ops:\n    - {name: TFLM_EXT_PATCH_STAGE, versions: [1]}\n"
    )
    (tmp_path / "board.yaml").write_text(text)
    firmware = load_device(tmp_path / "board.yaml").firmware
    assert firmware.builtin_ops == ("CONV_2D", "FULLY_CONNECTED")
    assert firmware.custom_versions("TFLM_EXT_PATCH_STAGE") == (1,)
    assert firmware.custom_versions("OTHER") == ()
    (tmp_path / "bad.yaml").write_text(text.replace("FULLY_CONNECTED", "conv2d"))
    with pytest.raises(PipelineError, match=r"bad.yaml: key 'firmware.builtin_ops.1'"):
        load_device(tmp_path / "bad.yaml")
