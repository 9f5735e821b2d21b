"""Every user-error path of the command line in one table: one line on stderr, no traceback, exit status 2.

Checkpoint errors (missing/invalid config, shapes, all-zero tensors, truncated files, pickles, --sha256 syntax and
mismatch, missing shards, missing directory for inspect) are in test_bad_inputs.py, the unknown target in
test_targets.py, altered bundle files, a bundle for another architecture and float or out-of-range token ids in
test_tvm_deploy.py; runtime selection for a target (cannot run / none of the runtimes) in test_commands.py. Rows that
need a bundle share one exported tiny BitNet bundle (x86_64, TVM) and are marked slow."""

import json
import shutil

import numpy as np
import pytest

from cli_helpers import assert_user_error, run_cli
from hf_checkpoints import TinyShape, write_packed

MAX_SEQ_LEN = 16
ZEROS = "0" * 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny HF BitNet checkpoint (no tokenizer) and, on first use, its x86_64 TVM bundle."""
    root = tmp_path_factory.mktemp("user-errors")
    checkpoint = write_packed(root / "ckpt", TinyShape(), "bitlinear", seed=3)
    bundle = root / "tiny.bundle"

    def exported():
        if not bundle.exists():
            run_cli("export", checkpoint, "-t", "x86_64", "-o", bundle, "--max-seq-len", MAX_SEQ_LEN, check=True)
        return bundle

    return checkpoint, exported


class Paths:
    def __init__(self, tmp_path, tiny):
        self.tmp, (self.checkpoint, self._exported) = tmp_path, tiny

    @property
    def bundle(self):
        return self._exported()

    def edited_bundle(self, edit_manifest):
        copy = self.tmp / "edited.bundle"
        shutil.copytree(self.bundle, copy)
        manifest = copy / "manifest.json"
        manifest.write_text(edit_manifest(manifest.read_text()))
        return copy

    def ids(self, array):
        path = self.tmp / "ids.npy"
        np.save(path, array)
        return path

    def dir_with_a_file(self):
        directory = self.tmp / "precious"
        directory.mkdir()
        (directory / "notes.txt").write_text("keep me")
        return directory


def json_edit(change):
    def edit(text):
        manifest = json.loads(text)
        change(manifest)
        return json.dumps(manifest)
    return edit


slow = pytest.mark.slow
CASES = [
    # --- checkpoints and conversion (fast) ---
    pytest.param(lambda p: ("convert", p.checkpoint, "-o", p.tmp / "out", "--encoding", "planar3"),
                 ["--encoding 'planar3'", "planar2", "base3"], id="convert-unknown-encoding"),
    pytest.param(lambda p: ("convert", "bimamba-demo", "-o", p.tmp / "out", "--encoding", "base3"),
                 ["--encoding 'base3'", "bimamba", "planar1"], id="convert-encoding-of-another-family"),
    pytest.param(lambda p: ("convert", p.tmp / "nowhere", "-o", p.tmp / "out"), ["not a directory"],
                 id="convert-missing-model-dir"),
    pytest.param(lambda p: ("convert", p.checkpoint, "-o", p.dir_with_a_file()), ["is not a checkpoint"],
                 id="convert-over-a-non-checkpoint-dir"),
    pytest.param(lambda p: ("binarize", p.checkpoint, "-o", p.tmp / "out"), ["bitnet checkpoint", "binarize takes"],
                 id="binarize-a-bitnet-checkpoint"),
    pytest.param(lambda p: ("binarize", "demo", "-o", p.tmp / "out"), ["demo is a bitnet checkpoint"],
                 id="binarize-the-bitnet-demo", marks=slow),
    pytest.param(lambda p: ("generate", p.checkpoint, "--prompt", "hi"), ["no tokenizer.json"],
                 id="generate-without-tokenizer"),
    pytest.param(lambda p: ("generate", "demo", "--prompt", ""), ["prompt is empty"], id="generate-empty-prompt"),
    pytest.param(lambda p: ("export", p.tmp / "nowhere", "-t", "x86_64", "-o", p.tmp / "b"), ["not a directory"],
                 id="export-missing-model-dir"),
    pytest.param(lambda p: ("export", p.checkpoint, "-t", "x86_64", "-r", "nosuch", "-o", p.tmp / "b"),
                 ["unknown runtime 'nosuch'", "onnx-portable"], id="export-unknown-runtime"),
    pytest.param(lambda p: ("export", p.checkpoint, "-t", "x86_64", "--sha256", f"nope.bin={ZEROS}",
                            "-o", p.tmp / "b"), ["nope.bin", "not present"], id="sha256-pin-of-a-missing-file"),
    pytest.param(lambda p: ("export", p.checkpoint, "-t", "x86_64", "--sha256", f"model.safetensors={ZEROS}",
                            "-o", p.tmp / "b"), ["does not match"], id="export-sha256-mismatch"),
    pytest.param(lambda p: ("convert", p.checkpoint, "-o", p.tmp / "out", "--sha256", "config.json"),
                 ["--sha256", "64-digit"], id="convert-sha256-without-digest"),
    # --- bundles (need one exported bundle) ---
    pytest.param(lambda p: ("validate", p.tmp / "nowhere", "--device", "local"), ["not a bundle"],
                 id="validate-not-a-bundle"),
    pytest.param(lambda p: ("validate", p.bundle, "--device", "bogus"), ["unknown device 'bogus'", "local", "qemu"],
                 id="unknown-device", marks=slow),
    pytest.param(lambda p: ("validate", p.bundle, "--device", "qemu:sparc"), ["unknown target 'sparc'"],
                 id="qemu-unknown-target", marks=slow),
    pytest.param(lambda p: ("validate", p.bundle, "--device", "ssh://nobody@127.0.0.1:1"), ["connection refused"],
                 id="unreachable-device", marks=slow),
    pytest.param(lambda p: ("validate", p.edited_bundle(lambda text: text[: len(text) // 2]), "--device", "local"),
                 ["manifest.json"], id="bundle-json-truncated", marks=slow),
    pytest.param(lambda p: ("validate", p.edited_bundle(json_edit(lambda m: m.update(format_version=99))),
                            "--device", "local"), ["bundle format 99 is not supported"],
                 id="bundle-format-version", marks=slow),
    pytest.param(lambda p: ("validate", p.edited_bundle(json_edit(lambda m: m["model"].pop("max_seq_len"))),
                            "--device", "local"), ["has no 'max_seq_len'"], id="manifest-missing-field", marks=slow),
    pytest.param(lambda p: ("run", p.edited_bundle(json_edit(lambda m: m.pop("target"))), "--device", "local",
                            "-i", p.ids(np.zeros((1, 3), np.int64)), "-o", p.tmp / "o.npy"), ["has no 'target'"],
                 id="manifest-missing-target", marks=slow),
    pytest.param(lambda p: ("validate", p.bundle, "-r", "onnx-custom", "--device", "local"),
                 ["has no 'onnx-custom' runtime", "it has tvm"], id="runtime-not-in-bundle", marks=slow),
    pytest.param(lambda p: ("bench", p.bundle, "--device", "local", "--prompt-tokens", 10, "--new-tokens", 8),
                 ["--prompt-tokens + --new-tokens", f"max_seq_len ({MAX_SEQ_LEN})"],
                 id="bench-beyond-max-seq-len", marks=slow),
    pytest.param(lambda p: ("generate", p.bundle, "--device", "local", "--prompt", "hi"), ["has no tokenizer"],
                 id="device-generate-without-tokenizer", marks=slow),
    pytest.param(lambda p: ("run", p.bundle, "--device", "local", "-i", p.ids(np.zeros(3, np.int64)),
                            "-o", p.tmp / "o.npy"), ["expected an integer array [B, T]"], id="run-1d-ids", marks=slow),
    pytest.param(lambda p: ("run", p.bundle, "--device", "local", "-i", p.tmp / "missing.npy", "-o", p.tmp / "o.npy"),
                 ["cannot read token ids"], id="run-unreadable-ids", marks=slow),
    pytest.param(lambda p: ("export", p.checkpoint, "-t", "x86_64", "-o", p.dir_with_a_file()),
                 ["is not a bundle", "left alone"], id="export-over-a-non-bundle-dir", marks=slow),
]


@pytest.mark.parametrize("command,fragments", CASES)
def test_user_error_is_one_line_and_exit_2(tmp_path, tiny, command, fragments):
    paths = Paths(tmp_path, tiny)
    assert_user_error(run_cli(*command(paths)), *fragments)
    assert not (tmp_path / "out").exists() and not (tmp_path / "b").exists()  # nothing half-written
