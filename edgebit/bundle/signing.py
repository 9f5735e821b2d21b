"""Signed bundles: an Ed25519 signature over the exact bytes of ``manifest.json``, stored beside it as ``manifest.sig``.

The manifest holds the sha256 of every other file, so one signature covers the whole bundle: a fleet that trusts a
key runs only bundles that key signed and nobody changed since (the signature catches an edited manifest,
:meth:`Bundle.verify` a changed file).

Files: a private key is PEM PKCS#8 (``edgebit keygen``, mode 0600), a public key PEM SubjectPublicKeyInfo
(``-----BEGIN PUBLIC KEY-----``, the ``.pub`` file); a trust file is one or more such PEM blocks in one file (``cat``
the ``.pub`` files together). ``manifest.sig`` is the raw 64-byte signature, so
``openssl pkeyutl -verify -pubin -inkey KEY.pub -rawin -in manifest.json -sigfile manifest.sig`` checks it too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgebit.bundle import MANIFEST, Bundle, BundleError
from edgebit.bundle.layout import MANIFEST_SIG
from edgebit.bundle.manifest import Manifest
from edgebit.errors import EdgebitError

PEM_PUBLIC = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.S)


def fingerprint(key: Ed25519PublicKey) -> str:
    """A short name for a public key in messages: sha256 of its 32 raw bytes, first 16 hex digits."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key(path: Path, force: bool = False) -> Ed25519PublicKey:
    """Write a new private key to ``path`` (0600, never readable by others, even for a moment) and its public key
    to ``path.pub``; existing files are kept unless ``force``."""
    path, public_path = Path(path), Path(f"{path}.pub")
    for existing in (path, public_path):
        if existing.exists() and not force:
            raise EdgebitError(f"{existing} exists; choose another name or pass --force to replace it")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        path.unlink(missing_ok=True)  # O_CREAT keeps an old file's mode; a new file gets 0600 from the start
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(private)
        public_path.write_bytes(public)
    except OSError as exc:
        raise EdgebitError(f"cannot write the key to {path}: {exc.strerror or exc}")
    return key.public_key()


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The signing key in ``path``; anything else (missing, not PEM, encrypted, not Ed25519) is one clear error."""
    data = _read(path, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's way of saying "needs a password"
        raise EdgebitError(f"{path}: the private key is encrypted; edgebit reads unencrypted PEM keys (mode 0600)")
    except (ValueError, UnsupportedAlgorithm):
        raise EdgebitError(f"{path}: not a PEM private key; create one with `edgebit keygen -o KEYFILE`")
    if not isinstance(key, Ed25519PrivateKey):
        raise EdgebitError(f"{path}: a {type(key).__name__.lstrip('_')}, not an Ed25519 key; create one with "
                           "`edgebit keygen -o KEYFILE`")
    return key


def load_trusted_keys(paths: list[Path]) -> list[Ed25519PublicKey]:
    """Every public key in the files ``paths`` (each: one or more PEM public keys); a file without one is an error."""
    keys = []
    for path in paths:
        data = _read(path, "trusted key")
        blocks = PEM_PUBLIC.findall(data)
        if not blocks and b"PRIVATE KEY-----" in data:
            raise EdgebitError(f"{path} is a private key; --trust takes its public key ({path}.pub)")
        if not blocks:
            raise EdgebitError(f"{path}: no PEM public key (-----BEGIN PUBLIC KEY-----) in it; pass the KEYFILE.pub "
                               "written by `edgebit keygen`")
        for block in blocks:
            try:
                key = serialization.load_pem_public_key(block)
            except (ValueError, UnsupportedAlgorithm):
                raise EdgebitError(f"{path}: a public key in it is not valid PEM; copy it again from KEYFILE.pub")
            if not isinstance(key, Ed25519PublicKey):
                raise EdgebitError(f"{path}: holds a {type(key).__name__.lstrip('_')}, not an Ed25519 key")
            keys.append(key)
    return keys


def check_signature(root: Path, manifest_bytes: bytes, trusted: list[Ed25519PublicKey]) -> Ed25519PublicKey:
    """The trusted key that signed ``manifest_bytes`` (read from ``root``), else a :class:`BundleError`."""
    sig_path = Path(root) / MANIFEST_SIG
    if not sig_path.is_file():
        raise BundleError(f"{root}: the bundle is not signed (no {MANIFEST_SIG}) and --trust requires a signature; "
                          "export it with --sign KEYFILE")
    signature = sig_path.read_bytes()
    for key in trusted:
        try:
            key.verify(signature, manifest_bytes)
            return key
        except InvalidSignature:
            continue
    names = ", ".join(fingerprint(k) for k in trusted)
    raise BundleError(f"{root}: {MANIFEST_SIG} does not match {MANIFEST} under any trusted key ({names}): the bundle "
                      "was signed by another key or changed after signing; export and sign it again")


def open_trusted(root: Path, trusted: list[Ed25519PublicKey]) -> Bundle:
    """The bundle at ``root`` if a trusted key signed its manifest and every file matches it, else a BundleError.

    The returned manifest is parsed from the very bytes that were verified (not read again), and the files are
    checked against it here, so nothing reaches a device unless the whole bundle is what the key holder signed."""
    bundle = Bundle.open(root)  # its errors for a missing or malformed manifest
    data = (bundle.root / MANIFEST).read_bytes()
    check_signature(bundle.root, data, trusted)
    signed = Bundle(bundle.root, Manifest.from_dict(json.loads(data), str(bundle.root / MANIFEST)))
    signed.verify()
    return signed


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise EdgebitError(f"{path}: cannot read the {what} ({exc.strerror or exc})")
