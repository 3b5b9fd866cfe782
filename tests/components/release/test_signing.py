"""Signatures of the manifest: Ed25519 and ECDSA P-256 PEM keys; what verification refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from components.errors import ComponentError
from components.release import bundle as bd
from components.release import signing
from components.release.manifest import MANIFEST_NAME
from tests.components.release.conftest import copy_bundle


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("keys")
    pairs = {}
    for name, algorithm in (
        ("ed", signing.ED25519),
        ("p256", signing.ECDSA_P256),
        ("other", signing.ED25519),
    ):
        pairs[name] = (root / f"{name}.pem", root / f"{name}.pub.pem")
        signing.generate_key_pair(*pairs[name], algorithm)
    return pairs


@pytest.mark.parametrize("name", ["ed", "p256"])
def test_a_signed_bundle_verifies_with_its_public_key(bundles, keys, tmp_path, name):
    folder = copy_bundle(bundles["1"], tmp_path / "b")
    private, public = keys[name]
    sig = signing.sign(folder, private)
    assert sig.algorithm == (signing.ED25519 if name == "ed" else signing.ECDSA_P256)
    record = json.loads((folder / bd.SIGNATURE_NAME).read_text())
    assert record["signed_file"] == MANIFEST_NAME and record["key_id"] == sig.key_id
    checked = bd.verify(folder, bundle_id=bundles["1"].bundle_id, public_key=public)
    assert checked.signed
    assert signing.verify_signature(folder).key_id == sig.key_id


def test_a_manifest_altered_after_signing_is_refused(bundles, keys, tmp_path):
    folder = copy_bundle(bundles["1"], tmp_path / "b")
    signing.sign(folder, keys["p256"][0])
    data = (folder / MANIFEST_NAME).read_bytes().replace(b'"builder"', b'"mallory"')
    (folder / MANIFEST_NAME).write_bytes(data)
    with pytest.raises(ComponentError, match="the signature does not verify"):
        bd.verify(folder, public_key=keys["p256"][1])
    with pytest.raises(ComponentError, match="the signature does not verify"):
        bd.verify(folder)  # the signature is checked whenever it is there


def test_a_bad_signature_is_refused(bundles, keys, tmp_path):
    folder = copy_bundle(bundles["1"], tmp_path / "b")
    signing.sign(folder, keys["ed"][0])
    record = json.loads((folder / bd.SIGNATURE_NAME).read_text())
    record["signature"] = record["signature"][:-4] + (
        "AAAA" if record["signature"][-4:] != "AAAA" else "BBBB"
    )
    (folder / bd.SIGNATURE_NAME).write_text(json.dumps(record))
    with pytest.raises(ComponentError, match="the signature does not verify"):
        bd.verify(folder, public_key=keys["ed"][1])
    (folder / bd.SIGNATURE_NAME).write_text("not json")
    with pytest.raises(ComponentError, match="manifest.sig is not a readable signature"):
        bd.verify(folder)


def test_a_signature_by_another_key_is_refused(bundles, keys, tmp_path):
    folder = copy_bundle(bundles["1"], tmp_path / "b")
    signing.sign(folder, keys["other"][0])
    with pytest.raises(ComponentError, match="not by the trusted key"):
        bd.verify(folder, public_key=keys["ed"][1])


def test_a_swapped_public_key_is_refused(bundles, keys, tmp_path):
    """Re-signing with another key but keeping the claimed key id gives itself away."""
    folder = copy_bundle(bundles["1"], tmp_path / "b")
    genuine = signing.sign(folder, keys["ed"][0])
    signing.sign(folder, keys["other"][0])
    record = json.loads((folder / bd.SIGNATURE_NAME).read_text())
    record["key_id"] = genuine.key_id
    (folder / bd.SIGNATURE_NAME).write_text(json.dumps(record))
    with pytest.raises(ComponentError, match="key_id does not match its public key"):
        bd.verify(folder, public_key=keys["ed"][1])


def test_a_trusted_key_requires_a_signature(bundles, keys):
    with pytest.raises(ComponentError, match="manifest.sig is missing: the bundle is not signed"):
        bd.verify(bundles["1"].folder, public_key=keys["ed"][1])
    with pytest.raises(ComponentError, match="is not signed"):
        bd.verify(bundles["1"].folder, require_signature=True)


def test_keys_other_than_ed25519_and_p256_are_refused(bundles, tmp_path):
    key = ec.generate_private_key(ec.SECP384R1())
    pem = tmp_path / "p384.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    folder = copy_bundle(bundles["1"], tmp_path / "b")
    with pytest.raises(ComponentError, match="p384.pem: ECDSA curve secp384r1 is not P-256"):
        signing.sign(folder, pem)
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(ComponentError, match="junk.pem: cannot read a PEM private key"):
        signing.sign(folder, tmp_path / "junk.pem")


def test_an_encrypted_private_key_needs_its_password(bundles, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "enc.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    folder = copy_bundle(bundles["1"], tmp_path / "b")
    with pytest.raises(ComponentError, match="enc.pem: cannot read a PEM private key"):
        signing.sign(folder, pem)
    signing.sign(folder, pem, password=b"s3cret")
    bd.verify(folder, require_signature=True)
