"""Bi-Mamba end to end: a transformers Mamba-2 checkpoint, binarized, exported through TVM (binary_linear and
selective_scan kernels, conv and SSM state carried across steps), run on the host and on emulated arm64 and
riscv64, against transformers' Mamba2ForCausalLM with the same W_hat."""

import numpy as np
import pytest
import torch

import edgebit
from cli_helpers import run_cli
from edgebit.bundle import Bundle
from edgebit.validate.session import DeviceSession
from edgebit.devices import open_device
from edgebit.generate import Sampling, generate_ids
from mamba_helpers import binarized_twin, hf_mamba2

DEVICES = {"x86_64": "local", "arm64": "qemu", "riscv64": "qemu"}
pytestmark = pytest.mark.slow  # binarizes and exports (TVM) per target


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    work = tmp_path_factory.mktemp("bimamba")
    hf = hf_mamba2(seed=7)
    hf.save_pretrained(work / "mamba2")
    run_cli("binarize", work / "mamba2", "-o", work / "bi", check=True)
    ours = edgebit.load(work / "bi")
    twin = binarized_twin(hf, ours)
    ids = np.random.default_rng(3).integers(0, 64, (2, 11), dtype=np.int64)
    np.save(work / "ids.npy", ids)
    with torch.no_grad():
        reference = twin(torch.from_numpy(ids)).logits.numpy()
    return work, ours, ids, reference


def bundle_for(work, target):
    bundle = work / f"bi-{target}.bundle"
    if not bundle.exists():
        run_cli("export", work / "bi", "--target", target, "-o", bundle, "--max-seq-len", "64", "--head", "fp32",
                check=True)  # the head transformers has: this checks the binary path at 1e-3
    return bundle


@pytest.mark.parametrize("target", list(DEVICES))
def test_device_logits_match_transformers(setup, target):
    work, _, _, reference = setup
    bundle = bundle_for(work, target)
    run_cli("run", bundle, "--device", DEVICES[target], "--input", work / "ids.npy", "--output",
            work / f"out-{target}.npy", check=True)
    logits = np.load(work / f"out-{target}.npy")
    assert np.abs(logits - reference).max() <= 1e-3
    assert np.array_equal(logits.argmax(-1), reference.argmax(-1))
    assert run_cli("validate", bundle, "--device", DEVICES[target]).returncode == 0


@pytest.mark.parametrize("target", ["x86_64", "riscv64"])
def test_device_decoding_carries_the_state(setup, target):
    """Greedy generation on the device (prefill, then one-token steps with conv and SSM state) equals the host's."""
    work, ours, _, _ = setup
    bundle = Bundle.open(bundle_for(work, target))
    prompt = [5, 9, 33, 2]
    host = generate_ids(ours, prompt, Sampling(12, 0.0, 0, 0))
    with DeviceSession(bundle, open_device(DEVICES[target], bundle.target)) as session:
        assert session.generate(prompt, 12) == host
