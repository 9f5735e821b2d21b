"""The bundle format: atomic writes, and verification that catches altered files and manifests."""

import json

import pytest

from edgebit.bundle import MANIFEST, Bundle, BundleError, BundleWriter


def make_bundle(root):
    with BundleWriter(root) as writer:
        writer.path("model.so").write_bytes(b"library")
        writer.path("lib/libx.so").write_bytes(b"runtime")
        return writer.commit({"target": {"name": "arm64", "debian_arch": "arm64"}})


def test_commit_lists_every_file_with_its_hash(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    assert set(bundle.manifest["files"]) == {"model.so", "lib/libx.so"}
    assert bundle.manifest["format_version"] == 2 and "edgebit_version" in bundle.manifest
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
