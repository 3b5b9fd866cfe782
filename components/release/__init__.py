"""Release: firmware bundles with a signed manifest, and a registry of what runs on which device.

- ``manifest``: the manifest record, its canonical JSON and its published JSON Schema;
- ``firmware_facts``: what the firmware must provide and compute (ops, tensors, preprocessing);
- ``bundle``: build a bundle folder from plain inputs and verify one;
- ``from_mlflow``: build a bundle from a registered MLflow model version;
- ``signing``: Ed25519 / ECDSA P-256 signatures of the manifest (``manifest.sig``);
- ``registry``: promotion and rollback per device target over a ``backend.RegistryBackend``
  (``local_store``: content-addressed folders plus a SQLite index), mirrored into MLflow's
  Model Registry by ``mlflow_mirror``.

Called by ``pipelines.release_cli``; MLflow is imported only by the modules that talk to it.
"""
