"""Signed bundles: keys from `edgebit keygen`, `export --sign`, and `--trust` refusing unsigned, re-signed or altered
bundles with one line before any device is touched. The signature is checked against cryptography's own Ed25519
verify (and openssl's, when installed), not only against edgebit's reading of it."""

import json
import shutil
import stat
import subprocess

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cli_helpers import assert_user_error, run_cli
from edgebit.bundle import MANIFEST, RUNNER, BundleError, BundleWriter, runtime_dir
from edgebit.bundle.layout import MANIFEST_SIG
from edgebit.bundle.signing import (check_signature, generate_key, load_private_key, load_trusted_keys,
                                    open_trusted)
from edgebit.checkpoints.files import sha256_of
from edgebit.errors import EdgebitError

RECORDS = {"model": {"family": "bitnet", "config": {"vocab_size": 16}, "max_seq_len": 8},
           "target": {"name": "x86_64", "triple": "x86_64-linux-gnu", "debian_arch": "amd64",
                      "loader": "ld-linux-x86-64.so.2"},
           "runtimes": {"tvm": {"version": "0"}}}
ABSENT_DEVICE = "no-such-device"  # opening it fails: a refusal naming the bundle shows the device was never reached


def public_key(path) -> Ed25519PublicKey:
    """cryptography's own reading of a .pub file (the reference, independent of edgebit.bundle.signing)."""
    key = serialization.load_pem_public_key(path.read_bytes())
    assert isinstance(key, Ed25519PublicKey)
    return key


def small_signed_bundle(root, key_file):
    with BundleWriter(root) as writer:
        writer.path("model.so").write_bytes(b"library")
        return writer.commit(RECORDS, signer=load_private_key(key_file).sign)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two key pairs: `signer` signs the bundle, `stranger` is another fleet's key."""
    work = tmp_path_factory.mktemp("keys")
    for name in ("signer", "stranger"):
        result = run_cli("keygen", "-o", work / name, check=True)
        assert f"{work / name}.pub" in result.stdout
    return work


# --- the module against cryptography's reference, no bundle export ---------------------------------------------

def test_signature_verifies_with_cryptography_and_openssl(keys, tmp_path):
    bundle = small_signed_bundle(tmp_path / "b", keys / "signer")
    manifest, signature = (bundle.root / MANIFEST).read_bytes(), (bundle.root / MANIFEST_SIG).read_bytes()
    public_key(keys / "signer.pub").verify(signature, manifest)  # raises InvalidSignature if wrong
    assert len(signature) == 64 and MANIFEST_SIG not in bundle.manifest.files
    bundle.verify()  # manifest.sig is not an unlisted file
    if shutil.which("openssl"):
        result = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", keys / "signer.pub", "-rawin",
                                 "-in", bundle.root / MANIFEST, "-sigfile", bundle.root / MANIFEST_SIG],
                                capture_output=True, text=True)
        assert result.returncode == 0 and "Verified Successfully" in result.stdout, result


def test_open_trusted_accepts_the_signer_and_refuses_others(keys, tmp_path):
    bundle = small_signed_bundle(tmp_path / "b", keys / "signer")
    signer, stranger = load_trusted_keys([keys / "signer.pub"]), load_trusted_keys([keys / "stranger.pub"])
    assert open_trusted(bundle.root, signer + stranger).manifest == bundle.manifest
    with pytest.raises(BundleError, match="does not match manifest.json under any trusted key"):
        open_trusted(bundle.root, stranger)
    (bundle.root / MANIFEST).write_bytes((bundle.root / MANIFEST).read_bytes().replace(b'"x86_64"', b'"x86_65"'))
    with pytest.raises(BundleError, match="does not match manifest.json"):
        check_signature(bundle.root, (bundle.root / MANIFEST).read_bytes(), signer)


def test_keygen_round_trip(keys, tmp_path):
    private = keys / "signer"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert load_private_key(private).public_key() == public_key(keys / "signer.pub")
    assert load_private_key(private).public_key() != public_key(keys / "stranger.pub")
    key = tmp_path / "k"
    generate_key(key)
    before = key.read_bytes()
    assert_user_error(run_cli("keygen", "-o", key), "exists", "--force")
    assert key.read_bytes() == before
    (tmp_path / "k2.pub").write_text("precious")  # only the .pub exists: still refused
    assert_user_error(run_cli("keygen", "-o", tmp_path / "k2"), "k2.pub exists")
    run_cli("keygen", "-o", key, "--force", check=True)
    assert key.read_bytes() != before and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert load_private_key(key).public_key() == public_key(tmp_path / "k.pub")


def test_trust_file_with_several_keys(keys, tmp_path):
    fleet = tmp_path / "fleet.pem"
    fleet.write_text("# our fleet\n" + (keys / "signer.pub").read_text() + (keys / "stranger.pub").read_text())
    found = load_trusted_keys([fleet])
    assert found == [public_key(keys / "signer.pub"), public_key(keys / "stranger.pub")]


@pytest.mark.parametrize("content, fragment", [
    (b"", "not a PEM private key"),
    (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a PEM private key"),
])
def test_corrupt_signing_key(tmp_path, content, fragment):
    (tmp_path / "bad").write_bytes(content)
    with pytest.raises(EdgebitError, match=fragment):
        load_private_key(tmp_path / "bad")


def test_corrupt_trusted_keys(keys, tmp_path):
    bad = tmp_path / "bad.pub"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(EdgebitError, match="not valid PEM"):
        load_trusted_keys([bad])
    with pytest.raises(EdgebitError, match="is a private key; --trust takes its public key"):
        load_trusted_keys([keys / "signer"])
    with pytest.raises(EdgebitError, match="cannot read"):
        load_trusted_keys([tmp_path / "missing.pub"])


# --- the CLI on a real bundle: the demo exported for this machine, signed ---------------------------------------

@pytest.fixture(scope="module")
def exported(keys, tmp_path_factory):
    out = tmp_path_factory.mktemp("signed") / "demo-x86_64.bundle"
    result = run_cli("export", "demo", "-t", "x86_64", "-o", out, "--max-seq-len", 32, "--sign", keys / "signer",
                     check=True)
    assert "signed" in result.stdout and (out / MANIFEST_SIG).is_file()
    return out


def token_ids(directory):
    np.save(directory / "ids.npy", np.zeros((1, 4), dtype=np.int64))
    return directory / "ids.npy"


def copy_of(bundle, tmp_path):
    return shutil.copytree(bundle, tmp_path / bundle.name, symlinks=True)


def test_signed_bundle_validates_under_trust(exported, keys, tmp_path):
    fleet = tmp_path / "fleet.pem"
    fleet.write_text((keys / "stranger.pub").read_text() + (keys / "signer.pub").read_text())
    result = run_cli("validate", exported, "--device", "local", "--trust", keys / "stranger.pub", "--trust", fleet,
                     "--json", check=True)
    assert json.loads(result.stdout)["passed"]
    public_key(keys / "signer.pub").verify((exported / MANIFEST_SIG).read_bytes(), (exported / MANIFEST).read_bytes())


def test_unsigned_bundle_is_refused_before_any_device(exported, keys, tmp_path):
    bundle = copy_of(exported, tmp_path)
    (bundle / MANIFEST_SIG).unlink()
    trust = ("--trust", keys / "signer.pub")
    ids = token_ids(tmp_path)
    for command in (["validate", bundle, "-d", ABSENT_DEVICE, *trust],
                    ["bench", bundle, "-d", ABSENT_DEVICE, *trust],
                    ["run", bundle, "-d", ABSENT_DEVICE, "-i", ids, "-o", tmp_path / "out.npy", *trust],
                    ["generate", bundle, "-d", ABSENT_DEVICE, "-p", "A list is", *trust]):
        assert_user_error(run_cli(*command), "is not signed", "--sign")
    assert not (tmp_path / "out.npy").exists()
    run_cli("validate", bundle, "-d", "local", "-r", "tvm", check=True)  # without --trust it still runs


def test_trust_from_environment(exported, keys, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEBIT_TRUST", f"{keys / 'stranger.pub'}")
    assert_user_error(run_cli("validate", exported, "-d", ABSENT_DEVICE), "under any trusted key")
    monkeypatch.setenv("EDGEBIT_TRUST", f"{keys / 'stranger.pub'}:{keys / 'signer.pub'}")
    assert json.loads(run_cli("validate", exported, "-d", "local", "--json", check=True).stdout)["passed"]


def test_signature_from_another_key_is_refused(exported, keys, tmp_path):
    bundle = copy_of(exported, tmp_path)
    (bundle / MANIFEST_SIG).write_bytes(load_private_key(keys / "stranger").sign((bundle / MANIFEST).read_bytes()))
    assert_user_error(run_cli("validate", bundle, "-d", ABSENT_DEVICE, "--trust", keys / "signer.pub"),
                      "manifest.sig does not match manifest.json under any trusted key")


def test_manifest_edited_after_signing_is_refused(exported, keys, tmp_path):
    """A swapped runner with its new sha256 written into the manifest passes Bundle.verify; only the signature
    can tell, as it does for an edit that changes no hash at all."""
    bundle = copy_of(exported, tmp_path)
    runner = f"{runtime_dir('tvm')}/{RUNNER}"
    (bundle / runner).write_bytes((bundle / runner).read_bytes() + b"\0")
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["files"][runner] = sha256_of(bundle / runner)
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    assert_user_error(run_cli("run", bundle, "-d", ABSENT_DEVICE, "--trust", keys / "signer.pub",
                              "-i", token_ids(tmp_path), "-o", tmp_path / "out.npy"),
                      "does not match manifest.json under any trusted key")
    shutil.copy2(exported / runner, bundle / runner)
    manifest = json.loads((exported / MANIFEST).read_text())
    manifest["built_on"] = "somewhere else"
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    assert_user_error(run_cli("validate", bundle, "-d", ABSENT_DEVICE, "--trust", keys / "signer.pub"),
                      "under any trusted key")


def test_runtime_file_edited_after_signing_is_refused(exported, keys, tmp_path):
    bundle = copy_of(exported, tmp_path)
    conf = f"{runtime_dir('tvm')}/model.conf"
    (bundle / conf).write_text((bundle / conf).read_text() + "\n")
    assert_user_error(run_cli("validate", bundle, "-d", ABSENT_DEVICE, "--trust", keys / "signer.pub"),
                      f"{conf} does not match its sha256")


def test_corrupt_keys_on_the_command_line(exported, keys, tmp_path):
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    out = tmp_path / "never.bundle"
    result = run_cli("export", "demo", "-t", "x86_64", "-o", out, "--sign", bad)
    assert_user_error(result, "bad.key: not a PEM private key", "edgebit keygen")
    assert "done" not in result.stdout and not out.exists()  # refused before any stage ran
    assert_user_error(run_cli("validate", exported, "-d", ABSENT_DEVICE, "--trust", bad), "bad.key: no PEM public key")
    assert_user_error(run_cli("generate", "demo", "-p", "hi", "--trust", keys / "signer.pub"), "add --device")
