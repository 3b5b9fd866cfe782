"""Sign a bundle's manifest with the user's key pair, and verify that signature.

The manifest lists the SHA-256 of every file, so signing its exact bytes signs the whole
bundle. Keys are PEM files (PKCS#8 or traditional private keys, SubjectPublicKeyInfo public
keys, or an X.509 certificate for the public side), Ed25519 or ECDSA on P-256 (signed over
SHA-256, DER signature), through ``cryptography``.

``manifest.sig`` is JSON: the algorithm, the signer's key id (SHA-256 of its DER public key),
its public key (PEM) and the base64 signature. Verification with a trusted public key
refuses any other key; without one it proves the manifest is unaltered since signing by
whoever holds the embedded key, and says so in the log.

Called by the release CLI (``bundle --key``, ``promote --key``) and ``bundle.verify``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from components.errors import ComponentError
from components.release.bundle import SIGNATURE_NAME
from components.release.manifest import MANIFEST_NAME

ED25519 = "ed25519"
ECDSA_P256 = "ecdsa-p256-sha256"
_SIG_FORMAT = 1

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Signature:
    """What ``manifest.sig`` holds."""

    algorithm: str
    key_id: str
    public_key_pem: str
    signature: bytes


def sign(folder: Path, private_key: Path, password: bytes | None = None) -> Signature:
    """Sign ``folder``'s manifest.json with the PEM key at ``private_key``; write manifest.sig."""
    folder = Path(folder)
    key = load_private_key(Path(private_key), password)
    data = _manifest_bytes(folder)
    algorithm = _algorithm(key, private_key)
    raw = key.sign(data) if algorithm == ED25519 else key.sign(data, _ecdsa())
    public_pem = _public_pem(key.public_key())
    signature = Signature(algorithm, key_id(key.public_key()), public_pem, raw)
    (folder / SIGNATURE_NAME).write_text(json.dumps(_record(signature), indent=2) + "\n")
    log.info("signed %s with %s key %s", folder / MANIFEST_NAME, algorithm, signature.key_id[:16])
    return signature


def verify_signature(folder: Path, public_key: Path | None = None) -> Signature:
    """Refuse a bundle whose manifest.sig is missing, unreadable, from another key than
    ``public_key`` (when given), or does not verify over manifest.json's bytes."""
    folder = Path(folder)
    signature = read_signature(folder)
    embedded = _load_public_pem(signature.public_key_pem.encode(), folder / SIGNATURE_NAME)
    if key_id(embedded) != signature.key_id:
        raise ComponentError(f"{folder / SIGNATURE_NAME}: key_id does not match its public key")
    if public_key is not None:
        trusted = load_public_key(Path(public_key))
        if key_id(trusted) != signature.key_id:
            raise ComponentError(
                f"{folder / SIGNATURE_NAME} is signed by key {signature.key_id[:16]}..., not by "
                f"the trusted key {public_key} ({key_id(trusted)[:16]}...)"
            )
    else:
        log.info(
            "%s: signature checked against its own key %s (no trusted key given)",
            folder,
            signature.key_id[:16],
        )
    _check(embedded, signature, _manifest_bytes(folder), folder)
    return signature


def _check(key, signature: Signature, data: bytes, folder: Path) -> None:
    from cryptography.exceptions import InvalidSignature

    if signature.algorithm != _algorithm(key, folder / SIGNATURE_NAME):
        raise ComponentError(
            f"{folder / SIGNATURE_NAME}: algorithm {signature.algorithm} does not match its key"
        )
    try:
        if signature.algorithm == ED25519:
            key.verify(signature.signature, data)
        else:
            key.verify(signature.signature, data, _ecdsa())
    except InvalidSignature as e:
        raise ComponentError(
            f"{folder / SIGNATURE_NAME}: the signature does not verify: {MANIFEST_NAME} was "
            "altered after signing, or the signature is not its own"
        ) from e


def read_signature(folder: Path) -> Signature:
    path = Path(folder) / SIGNATURE_NAME
    try:
        record = json.loads(path.read_text())
        if record.get("format") != _SIG_FORMAT:
            raise ValueError(f"format {record.get('format')!r} is not {_SIG_FORMAT}")
        return Signature(
            algorithm=str(record["algorithm"]),
            key_id=str(record["key_id"]),
            public_key_pem=str(record["public_key"]),
            signature=base64.b64decode(record["signature"], validate=True),
        )
    except FileNotFoundError as e:
        raise ComponentError(f"{path} is missing: the bundle is not signed") from e
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ComponentError(f"{path} is not a readable signature: {e}") from e


def key_id(public_key) -> str:
    """SHA-256 (hex) of the key's DER SubjectPublicKeyInfo."""
    import hashlib

    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def load_private_key(path: Path, password: bytes | None = None):
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=password)
    except (OSError, ValueError, TypeError) as e:
        raise ComponentError(f"{path}: cannot read a PEM private key: {e}") from e
    _algorithm(key, path)
    return key


def load_public_key(path: Path):
    """A PEM public key, or the public key of a PEM certificate."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ComponentError(f"{path}: cannot read the public key: {e}") from e
    if b"BEGIN CERTIFICATE" in data:
        from cryptography import x509

        try:
            key = x509.load_pem_x509_certificate(data).public_key()
        except ValueError as e:
            raise ComponentError(f"{path}: not a PEM certificate: {e}") from e
        _algorithm(key, path)
        return key
    return _load_public_pem(data, path)


def _load_public_pem(data: bytes, source: Path):
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise ComponentError(f"{source}: not a PEM public key: {e}") from e
    _algorithm(key, source)
    return key


def _algorithm(key, source: Path) -> str:
    """ED25519 or ECDSA_P256 for a supported key (private or public); refuse any other."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return ED25519
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return ECDSA_P256
        raise ComponentError(f"{source}: ECDSA curve {key.curve.name} is not P-256 (secp256r1)")
    raise ComponentError(
        f"{source}: {type(key).__name__} keys are not supported: use an Ed25519 or ECDSA P-256 key"
    )


def _ecdsa():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.ECDSA(hashes.SHA256())


def _public_pem(public_key) -> str:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _manifest_bytes(folder: Path) -> bytes:
    try:
        return (folder / MANIFEST_NAME).read_bytes()
    except OSError as e:
        raise ComponentError(f"{folder}: cannot read {MANIFEST_NAME}: {e}") from e


def _record(signature: Signature) -> dict[str, object]:
    return {
        "format": _SIG_FORMAT,
        "signed_file": MANIFEST_NAME,
        "algorithm": signature.algorithm,
        "key_id": signature.key_id,
        "public_key": signature.public_key_pem,
        "signature": base64.b64encode(signature.signature).decode(),
    }


def generate_key_pair(private_path: Path, public_path: Path, algorithm: str = ED25519) -> None:
    """Write a new unencrypted key pair as PEM (for tests and first set-ups; protect the
    private key file, or encrypt it with ``openssl pkcs8 -topk8``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if algorithm not in (ED25519, ECDSA_P256):
        raise ComponentError(f"algorithm {algorithm!r}: choose {ED25519} or {ECDSA_P256}")
    key = (
        ed25519.Ed25519PrivateKey.generate()
        if algorithm == ED25519
        else ec.generate_private_key(ec.SECP256R1())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    Path(private_path).write_bytes(pem)
    os.chmod(private_path, 0o600)
    Path(public_path).write_text(_public_pem(key.public_key()))
