"""The main job end to end with real parts: `edgebit export` through TVM for every target, `edgebit run` on the
host (x86_64) and on qemu-user emulated devices (arm64, arm64-dotprod, riscv64), checked against transformers'
BitNetForCausalLM with the BitNet agreement bound; the vector instructions in the libraries; the device refusing
altered or foreign bundles."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from cli_helpers import assert_user_error, run_cli
from edgebit.validate.agreement import compare_logits
from edgebit.runtimes.tvm.backend import instruction_counts
from edgebit.bundle import Bundle
from edgebit.validate.session import DeviceSession
from edgebit.devices import DeviceError
from edgebit.devices.qemu import QemuDevice
from edgebit.targets import resolve_target
from hf_checkpoints import TinyShape, transformers_logits, write_packed, write_unpacked

DEVICES = {"x86_64": "local", "arm64": "qemu", "arm64-dotprod": "qemu", "riscv64": "qemu"}
pytestmark = pytest.mark.slow  # every test exports a bundle (TVM compile); cross and qemu come from tests/conftest.py
SHAPE = TinyShape(vocab=96, hidden=48, intermediate=76, heads=4, kv_heads=2, tied=False)  # Kq 12 and 19: vector tails


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("tvm")


@pytest.fixture(scope="module")
def checkpoints(workdir):
    return {"packed-bitlinear": write_packed(workdir / "packed", SHAPE, "bitlinear", seed=21),
            "packed-autobitlinear": write_packed(workdir / "auto", TinyShape(), "autobitlinear", seed=23),
            "unpacked": write_unpacked(workdir / "unpacked", TinyShape(), seed=22),
            # Kq 68 and 75: one full 64-byte VNNI step plus a tail
            "wide": write_packed(workdir / "wide", TinyShape(vocab=96, hidden=272, intermediate=300, heads=4,
                                                             kv_heads=2, tied=False), "bitlinear", seed=24)}


@pytest.fixture(scope="module")
def input_ids(workdir):
    ids = np.random.default_rng(5).integers(0, 96, (2, 13), dtype=np.int64)
    np.save(workdir / "ids.npy", ids)
    return ids


_bundles = {}


def bundle_for(workdir, checkpoints, checkpoint, target):
    key = (checkpoint, target)
    if key not in _bundles:
        out = workdir / f"{checkpoint}-{target}.bundle"
        # the head transformers has: random checkpoints amplify an int8 table's rounding (the demo tests the int8 head)
        run_cli("export", checkpoints[checkpoint], "--target", target, "-o", out, "--max-seq-len", "64",
                "--head", "fp32", "--kv-cache", "fp32", check=True)
        _bundles[key] = out
    return _bundles[key]


def run_on_device(workdir, bundle, device, ids_file):
    out = workdir / f"{bundle.name}-{device}.npy"
    run_cli("run", bundle, "--device", device, "--input", ids_file, "--output", out, check=True)
    return np.load(out)


@pytest.mark.parametrize("target", list(DEVICES))
def test_device_logits_agree_with_transformers(workdir, checkpoints, input_ids, target):
    bundle = bundle_for(workdir, checkpoints, "packed-bitlinear", target)
    logits = run_on_device(workdir, bundle, DEVICES[target], workdir / "ids.npy")
    reference = transformers_logits(checkpoints["packed-bitlinear"], torch.from_numpy(input_ids)).numpy()
    result = compare_logits(logits, reference)
    assert result.passed, result.describe()


@pytest.mark.parametrize("checkpoint,target", [("unpacked", "x86_64"), ("unpacked", "arm64"),
                                               ("packed-autobitlinear", "riscv64")])
def test_other_hf_layouts_on_device(workdir, checkpoints, checkpoint, target):
    """The unpacked (quantized at load) and the multiplying-scale (autobitlinear) layouts, tied embeddings."""
    ids = np.random.default_rng(6).integers(0, 101, (1, 9), dtype=np.int64)
    np.save(workdir / "ids101.npy", ids)
    bundle = bundle_for(workdir, checkpoints, checkpoint, target)
    logits = run_on_device(workdir, bundle, DEVICES[target], workdir / "ids101.npy")
    reference = transformers_logits(checkpoints[checkpoint], torch.from_numpy(ids)).numpy()
    result = compare_logits(logits, reference)
    assert result.passed, result.describe()


@pytest.mark.parametrize("target", list(DEVICES))
def test_validate_passes_on_the_device(workdir, checkpoints, target):
    bundle = bundle_for(workdir, checkpoints, "packed-bitlinear", target)
    report = json.loads(run_cli("validate", bundle, "--device", DEVICES[target], "--json", check=True).stdout)
    assert report["passed"] and [r["runtime"] for r in report["runtimes"]] == ["tvm"]
    tvm = report["runtimes"][0]
    assert tvm["cosine"] >= 0.9999 and abs(tvm["perplexity_delta"]) < 1e-4 * tvm["reference_perplexity"]


@pytest.mark.parametrize("target,feature,forbidden", [("arm64", "neon", "dotprod"), ("arm64-dotprod", "dotprod", None),
                                                      ("riscv64", "rvv", None), ("x86_64", "avx2", None)])
def test_libraries_contain_the_isa_instructions(workdir, checkpoints, target, feature, forbidden):
    bundle = bundle_for(workdir, checkpoints, "packed-bitlinear", target)
    resolved = resolve_target(target)
    counts = instruction_counts(bundle / "runtimes/tvm/model.so", resolved)
    assert counts[feature] > 0, counts
    if forbidden:  # plain ARMv8 (Raspberry Pi 4) has no dot product: sdot would be SIGILL there
        text = __import__("subprocess").run([f"{resolved.cross_prefix}objdump", "-d", str(bundle / "runtimes/tvm/model.so")],
                                            capture_output=True, text=True).stdout
        assert " sdot" not in text and " udot" not in text


def test_avx512_target_uses_vnni_and_agrees_when_the_host_has_it(workdir, checkpoints, input_ids):
    from edgebit.toolchain.host_cpu import cpu_flags

    bundle = bundle_for(workdir, checkpoints, "wide", "x86_64-avx512")
    assert instruction_counts(bundle / "runtimes/tvm/model.so", resolve_target("x86_64-avx512"))["avx512vnni"] > 0
    if "avx512_vnni" not in cpu_flags():
        pytest.skip("this CPU has no AVX-512 VNNI to run the bundle on")
    logits = run_on_device(workdir, bundle, "local", workdir / "ids.npy")
    reference = transformers_logits(checkpoints["wide"], torch.from_numpy(input_ids)).numpy()
    assert compare_logits(logits, reference).passed
    # decode steps (one token: kernel.h's four-row VNNI GEMV) pick transformers' greedy tokens
    from edgebit.devices import open_device

    prompt = input_ids[0].tolist()
    with DeviceSession(Bundle.open(bundle), open_device("local", resolve_target("x86_64-avx512"))) as session:
        generated = session.generate(prompt, 6)
    expected = list(prompt)
    for _ in range(6):
        expected.append(int(transformers_logits(checkpoints["wide"], torch.tensor([expected]))[0, -1].argmax()))
    assert generated == expected[len(prompt):]


@pytest.mark.qemu
def test_riscv64_without_vector_extension_dies_with_sigill(workdir, checkpoints):
    bundle = Bundle.open(bundle_for(workdir, checkpoints, "packed-bitlinear", "riscv64"))
    no_vector = dataclasses.replace(resolve_target("riscv64"), qemu_cpu="rv64,v=false")
    with DeviceSession(bundle, QemuDevice(no_vector)) as session:
        with pytest.raises(DeviceError, match="SIGILL"):
            session.logits(np.zeros((1, 4), dtype=np.int64))


def tampered_copy(workdir, checkpoints, name):
    source = bundle_for(workdir, checkpoints, "packed-bitlinear", "arm64")
    copy = workdir / f"tampered-{name}.bundle"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(source, copy)
    return copy


@pytest.mark.cross
def test_validate_refuses_altered_weights(workdir, checkpoints):
    bundle = tampered_copy(workdir, checkpoints, "weights")
    data = bytearray((bundle / "runtimes/tvm/weights.params").read_bytes())
    data[-3] ^= 0x01
    (bundle / "runtimes/tvm/weights.params").write_bytes(bytes(data))
    assert_user_error(run_cli("validate", bundle, "--device", "qemu"), "weights.params", "sha256")


@pytest.mark.cross
def test_validate_refuses_manifest_hash_mismatch(workdir, checkpoints):
    bundle = tampered_copy(workdir, checkpoints, "manifest")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["runtimes/tvm/model.so"] = "f" * 64
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert_user_error(run_cli("validate", bundle, "--device", "qemu"), "model.so", "sha256")


def test_validate_refuses_a_bundle_for_another_architecture(workdir, checkpoints):
    bundle = bundle_for(workdir, checkpoints, "packed-bitlinear", "x86_64")
    assert_user_error(run_cli("validate", bundle, "--device", "qemu:arm64"), "built for x86_64", "arm64")


@pytest.mark.qemu
def test_validate_fails_when_the_device_disagrees(workdir, checkpoints):
    """A consistent bundle whose reference logits disagree with what the device computes fails the bound."""
    from edgebit.bundle import REFERENCE_LOGITS
    from edgebit.checkpoints.files import sha256_of

    bundle = tampered_copy(workdir, checkpoints, "reference")
    logits = np.load(bundle / REFERENCE_LOGITS)
    logits[..., 0] += 0.5 * np.abs(logits).max()
    np.save(bundle / REFERENCE_LOGITS, logits)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][REFERENCE_LOGITS] = sha256_of(bundle / REFERENCE_LOGITS)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    result = run_cli("validate", bundle, "--device", "qemu")
    assert result.returncode == 1 and "misses the accuracy bound" in result.stderr


def test_run_rejects_bad_input(workdir, checkpoints):
    bundle = bundle_for(workdir, checkpoints, "packed-bitlinear", "x86_64")
    np.save(workdir / "floats.npy", np.zeros((1, 3), dtype=np.float32))
    assert_user_error(run_cli("run", bundle, "--device", "local", "--input", workdir / "floats.npy", "--output",
                              workdir / "o.npy"), "integer array")
    np.save(workdir / "big.npy", np.full((1, 3), 10_000, dtype=np.int64))
    assert_user_error(run_cli("run", bundle, "--device", "local", "--input", workdir / "big.npy", "--output",
                              workdir / "o.npy"), "token ids must be in")


@pytest.mark.parametrize("target", ["x86_64", "riscv64"])
def test_device_greedy_generation_matches_host(workdir, checkpoints, target):
    """Prefill + KV-cache decode steps on the device continue a prompt exactly as host PyTorch does."""
    import edgebit
    from edgebit.devices import open_device
    from edgebit.generate import Sampling, generate_ids

    prompt = [3, 17, 42, 5, 9]
    host = generate_ids(edgebit.load(checkpoints["packed-bitlinear"]), prompt, Sampling(10, 0.0, 0, 0))
    bundle = Bundle.open(bundle_for(workdir, checkpoints, "packed-bitlinear", target))
    with DeviceSession(bundle, open_device(DEVICES[target], bundle.target)) as session:
        assert session.generate(prompt, 10) == host
