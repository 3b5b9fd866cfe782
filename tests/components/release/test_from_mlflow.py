"""Bundles built from registered MLflow model versions, and the Model Registry kept in step
with the device registry (aliases and tags), on a real SQLite-backed MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from components.errors import ComponentError
from components.release.from_mlflow import build_from_mlflow
from components.release.mlflow_mirror import alias_name, tag_key
from components.release.registry import DeviceRegistry
from tests.components.release.tracked import MODEL_NAME, tracked_device, tracked_store
from tests.components.tracking.test_tflm_flavor import LABELS

DEVICE = tracked_device()
ALIAS = alias_name(DEVICE.name, "production")
TAG = tag_key(DEVICE.name, "production")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tracked_store(tmp_path_factory)


@pytest.fixture(scope="module")
def built(store, tmp_path_factory) -> dict:
    """Bundles of the three versions for the gated device."""
    root = tmp_path_factory.mktemp("mlflow-bundles")
    return {
        name: build_from_mlflow(store.uri, MODEL_NAME, version, DEVICE, root / name)
        for name, version in store.versions.items()
    }


def test_a_bundle_reads_the_versions_run(store, built):
    client = MlflowClient(store.uri)
    version = client.get_model_version(MODEL_NAME, store.versions["good"])
    m = built["good"].manifest
    assert (m.model.name, m.model.version, m.model.run_id) == (
        MODEL_NAME,
        store.versions["good"],
        version.run_id,
    )
    run = client.get_run(version.run_id)
    assert m.figures.int8_accuracy == run.data.metrics["int8_accuracy"] == pytest.approx(0.9)
    assert m.figures.macs == 12345 and m.figures.estimated_latency_ms == pytest.approx(1.5)
    assert m.figures.arena_min > 0 and m.figures.flash_bytes == run.data.metrics["flash_bytes"]
    assert m.labels == LABELS and m.gate.device == DEVICE.name and m.gate.passed
    prep = m.preprocessing
    assert prep.preprocessing.describe() == {"kind": "audio", "frontend": "mfcc"}
    assert prep.input.shape == (1, 49, 10, 1) and "window_samples" in prep.parameters
    local = Path(
        client.download_artifacts(
            version.run_id, "firmware/kws.tflite", str(built["good"].folder.parent)
        )
    )
    assert (built["good"].folder / "model.tflite").read_bytes() == local.read_bytes()


def test_the_failed_gate_travels_into_the_bundle(built):
    gate = built["failed"].manifest.gate
    assert not gate.passed and [r.name for r in gate.rules if not r.passed] == ["accuracy"]


def test_an_unknown_version_is_refused_naming_it(store, tmp_path):
    with pytest.raises(ComponentError, match=f"'{MODEL_NAME}' version 99 at sqlite"):
        build_from_mlflow(store.uri, MODEL_NAME, "99", DEVICE, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def _at(client: MlflowClient, alias: str) -> str:
    return str(client.get_model_version_by_alias(MODEL_NAME, alias).version)


def _tagged(client: MlflowClient) -> list[str]:
    versions = client.search_model_versions(f"name = '{MODEL_NAME}'")
    return sorted(str(v.version) for v in versions if TAG in v.tags)


def test_promotion_and_rollback_move_the_alias_and_tag(store, built, tmp_path):
    client = MlflowClient(store.uri)
    registry = DeviceRegistry.local(tmp_path / "registry", tracking_uri=store.uri)
    good, worse = (registry.add(built[name].folder).bundle_id for name in ("good", "worse"))
    registry.promote(good)
    assert _at(client, ALIAS) == store.versions["good"]
    assert client.get_model_version(MODEL_NAME, store.versions["good"]).tags[TAG] == good
    registry.promote(worse, force=True, reason="needs the smaller model")
    assert _at(client, ALIAS) == store.versions["worse"]
    assert _tagged(client) == [store.versions["worse"]]
    registry.rollback(MODEL_NAME, DEVICE.name)
    assert _at(client, ALIAS) == store.versions["good"]
    assert _tagged(client) == [store.versions["good"]]
    staging = alias_name(DEVICE.name, "staging")
    registry.promote(worse, "staging")
    assert _at(client, staging) == store.versions["worse"]


def test_a_failed_gate_is_refused_and_mlflow_is_untouched(store, built, tmp_path):
    client = MlflowClient(store.uri)
    registry = DeviceRegistry.local(tmp_path / "registry", tracking_uri=store.uri)
    registry.promote(registry.add(built["good"].folder).bundle_id)
    failed = registry.add(built["failed"].folder).bundle_id
    with pytest.raises(ComponentError, match="the gate did not pass for 'nucleo-f746zg'"):
        registry.promote(failed, force=True, reason="try")
    assert _at(client, ALIAS) == store.versions["good"]


def test_a_version_mlflow_does_not_know_is_refused_before_any_change(store, bundles, tmp_path):
    registry = DeviceRegistry.local(tmp_path / "registry", tracking_uri=store.uri)
    bundle_id = registry.add(bundles["1"].folder).bundle_id
    with pytest.raises(ComponentError, match="'tiny-classifier' version 1 is not in the MLflow"):
        registry.promote(bundle_id)
    assert registry.history() == ()


def test_sync_repairs_a_drifted_alias(store, built, tmp_path):
    client = MlflowClient(store.uri)
    registry = DeviceRegistry.local(tmp_path / "registry", tracking_uri=store.uri)
    registry.promote(registry.add(built["good"].folder).bundle_id)
    client.set_registered_model_alias(MODEL_NAME, ALIAS, store.versions["failed"])
    assert registry.sync_mlflow() == 1
    assert _at(client, ALIAS) == store.versions["good"]
    with pytest.raises(ComponentError, match="no MLflow tracking URI"):
        DeviceRegistry.local(tmp_path / "plain").sync_mlflow()
