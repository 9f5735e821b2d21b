"""The bundle format: atomic writes, and verification that catches altered files and manifests."""

import json

import pytest

from edgebit.bundle import MANIFEST, Bundle, BundleError, BundleWriter


def make_bundle(root):
    with BundleWriter(root) as writer:
        writer.path("model.so").write_bytes(b"library")
        writer.path("lib/libx.so").write_bytes(b"runtime")
        return writer.commit(RECORDS)


RECORDS = {"model": {"family": "bitnet", "config": {"vocab_size": 16}, "max_seq_len": 8},
           "target": {"name": "arm64", "triple": "aarch64-linux-gnu", "debian_arch": "arm64",
                      "loader": "ld-linux-aarch64.so.1"},
           "runtimes": {"tvm": {"version": "0"}}}


def test_commit_lists_every_file_with_its_hash(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    assert set(bundle.manifest.files) == {"model.so", "lib/libx.so"}
    assert bundle.manifest.format_version == 3 and bundle.manifest.edgebit_version
    bundle.verify()


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with BundleWriter(tmp_path / "b") as writer:
            writer.path("model.so").write_bytes(b"half")
            raise RuntimeError("compiler crashed")
    assert list(tmp_path.iterdir()) == []


def test_altered_file_is_detected(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    (bundle.root / "model.so").write_bytes(b"librarx")
    with pytest.raises(BundleError, match="model.so does not match its sha256"):
        Bundle.open(bundle.root).verify()


def test_edited_manifest_is_detected(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    manifest = json.loads((bundle.root / MANIFEST).read_text())
    manifest["files"]["lib/libx.so"] = "0" * 64
    (bundle.root / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="libx.so does not match"):
        Bundle.open(bundle.root).verify()


def test_missing_and_extra_files_are_detected(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    (bundle.root / "stray.txt").write_text("?")
    with pytest.raises(BundleError, match="stray.txt is not listed"):
        bundle.verify()
    (bundle.root / "stray.txt").unlink()
    (bundle.root / "model.so").unlink()
    with pytest.raises(BundleError, match="model.so is missing"):
        bundle.verify()


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a bundle"):
        Bundle.open(tmp_path)


def test_refuses_to_replace_a_directory_that_is_not_a_bundle(tmp_path):
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(BundleError, match="is not a bundle"):
        BundleWriter(precious)
    assert (precious / "cat.jpg").read_bytes() == b"meow"
    make_bundle(tmp_path / "b")
    make_bundle(tmp_path / "b")  # an existing bundle is replaced


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.pop("target"), "has no 'target'"),
    (lambda m: m.update(files=None), "'files' must be a dict"),
    (lambda m: m["model"].pop("max_seq_len"), "has no 'max_seq_len'"),
    (lambda m: m["model"]["config"].update(vocab_size="16"), "'vocab_size' must be a int"),
    (lambda m: m["files"].update({"../../../../etc/hostname": "0" * 64}), "is not a path inside the bundle"),
    (lambda m: m["files"].update({"/etc/hostname": "0" * 64}), "is not a path inside the bundle"),
    (lambda m: m["files"].update({"model.so": "xyz"}), "not 64 hex digits"),
    (lambda m: m.update(runtimes={}), "lists no runtimes"),
    (lambda m: m["target"].update(loader="../../bin/sh"), "is not a path inside the bundle"),
    (lambda m: m.update(format_version=99), "bundle format 99 is not supported"),
])
def test_a_malformed_manifest_is_one_clear_error(tmp_path, edit, message):
    """The typed manifest checks fields, types and paths when the bundle is opened, before any file is read."""
    bundle = make_bundle(tmp_path / "b")
    manifest = json.loads((bundle.root / MANIFEST).read_text())
    edit(manifest)
    (bundle.root / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        Bundle.open(bundle.root)
