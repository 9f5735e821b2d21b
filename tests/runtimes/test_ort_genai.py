"""A BitNet bundle's onnx-portable runtime directory is an ONNX Runtime GenAI model folder: the demo and a checkpoint
of other shapes (GQA with 3 query heads per KV head, head_dim 10, untied head) exported with ``--runtime
onnx-portable`` load in ``onnxruntime_genai.Model`` as they are, and GenAI's greedy generation picks edgebit's host
greedy tokens, one prompt or a right-padded batch of two; GenAI's tokenizer reads the bundle's tokenizer. The decoder
graph itself (growing KV cache, past length 0 included) agrees with transformers step by step, and the directory's
edgebit runner still validates. An arm64 bundle's directory does the same in the aarch64 wheels under qemu-user
(Debian's arm64 Python 3.11, fetched into edgebit's cache)."""

import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import onnxruntime_genai as og
import pytest
import torch

import edgebit
from cli_helpers import run_cli
from edgebit.cli import EMBEDDED_MODELS
from edgebit.generate import Sampling, generate_ids, load_tokenizer
from edgebit.models import family_of
from edgebit.models.bimamba import FAMILY as BIMAMBA
from edgebit.targets import resolve_target
from edgebit.toolchain import provision
from edgebit.validate.agreement import compare_logits
from hf_checkpoints import TinyShape, transformers_logits, write_packed

MAX_SEQ_LEN = 64
NEW_TOKENS = 20
PORTABLE = "runtimes/onnx-portable"
OTHER_SHAPE = TinyShape(vocab=173, hidden=60, intermediate=88, layers=3, heads=6, kv_heads=2, tied=False)
# The demo with export's default int8 head; the random checkpoint keeps its fp32 head, as transformers has it (an
# untrained network amplifies the int8 table's rounding through its int8 activations: cosine 0.90 against fp32).
HEADS = {"demo": "int8", "other": "fp32"}
KV_CACHES = {"demo": "fp16", "other": "fp32"}  # "other" is compared with transformers (float32)
TEXTS = ["A list is", "def main():\n    return {'key': [1, 2.5]}  # done", " Ünïcödé ✓\tand  spaces"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("genai")


@pytest.fixture(scope="module")
def exported(work):
    """{name: (checkpoint, bundle)} for the demo and the checkpoint of other shapes, onnx-portable only."""
    checkpoints = {"demo": EMBEDDED_MODELS["demo"], "other": write_packed(work / "other", OTHER_SHAPE, "bitlinear", 5)}
    bundles = {}
    for name, checkpoint in checkpoints.items():
        out = work / f"{name}.bundle"
        run_cli("export", "demo" if name == "demo" else checkpoint, "-t", "x86_64", "--runtime", "onnx-portable",
                "-o", out, "--max-seq-len", MAX_SEQ_LEN, "--head", HEADS[name], "--kv-cache", KV_CACHES[name], check=True)
        bundles[name] = (checkpoint, out)
    return bundles


def prompt_ids(name: str, checkpoint, count: int = 1) -> list[list[int]]:
    """Prompts of the demo's tokenizer, or seeded ids that avoid the checkpoint's special tokens (GenAI takes its
    pad token, the EOS, for padding)."""
    if name == "demo":
        return [load_tokenizer(checkpoint).encode(text).ids for text in TEXTS[:count]]
    generator = np.random.default_rng(7)
    return [generator.integers(2, OTHER_SHAPE.vocab, size=length).tolist() for length in (9, 4, 6)[:count]]


def genai_greedy(folder, prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
    """GenAI's greedy continuation of each prompt (a batch pads the shorter ones with pad_token_id on the right)."""
    model = og.Model(str(folder))
    pad = json.loads((folder / "genai_config.json").read_text())["model"]["pad_token_id"]
    longest = max(map(len, prompts))
    params = og.GeneratorParams(model)
    params.set_search_options(do_sample=False, max_length=longest + new_tokens, batch_size=len(prompts))
    generator = og.Generator(model, params)
    generator.append_tokens(np.array([p + [pad] * (longest - len(p)) for p in prompts], dtype=np.int32))
    while not generator.is_done():
        generator.generate_next_token()
    return [generator.get_sequence(i)[longest:].tolist() for i in range(len(prompts))]


def until_eos(tokens: list[int], eos: int | None) -> list[int]:
    return tokens[:tokens.index(eos) + 1] if eos in tokens else tokens


def host_model(checkpoint, name: str = "demo"):
    """The checkpoint as its bundle holds it (HEADS, KV_CACHES)."""
    from edgebit.models.head import set_head_precision
    from edgebit.models.kv_cache import set_kv_cache_precision

    return set_kv_cache_precision(set_head_precision(edgebit.load(checkpoint), HEADS[name]), KV_CACHES[name])


def host_greedy(model, prompt: list[int], new_tokens: int) -> list[int]:
    """edgebit's greedy tokens up to and including an EOS, where GenAI stops (the host drops the EOS and stops
    when given one: none is given here)."""
    tokens = generate_ids(model, prompt, Sampling(max_new_tokens=new_tokens, temperature=0))
    return until_eos(tokens, model.config.eos_token_id)


def test_only_bitnet_offers_a_genai_decoder():
    assert family_of(edgebit.load(EMBEDDED_MODELS["demo"])).genai_decoder is not None
    assert BIMAMBA.genai_decoder is None  # GenAI has no model type for Bi-Mamba: its directory stays as it was


@pytest.mark.parametrize("name", ["demo", "other"])
def test_genai_greedy_equals_host_greedy(exported, name):
    checkpoint, bundle = exported[name]
    model = host_model(checkpoint, name)
    config = json.loads((bundle / PORTABLE / "genai_config.json").read_text())["model"]
    decoder = config["decoder"]
    assert (decoder["num_hidden_layers"], decoder["num_attention_heads"], decoder["num_key_value_heads"],
            decoder["head_size"], decoder["hidden_size"], config["vocab_size"]) == (
        model.config.num_hidden_layers, model.config.num_attention_heads, model.config.num_key_value_heads,
        model.config.head_dim, model.config.hidden_size, model.config.vocab_size)
    [prompt] = prompt_ids(name, checkpoint)
    [genai] = genai_greedy(bundle / PORTABLE, [prompt], NEW_TOKENS)
    host = host_greedy(model, prompt, NEW_TOKENS)
    assert genai == host, (genai, host)
    assert len(genai) > 1


@pytest.mark.parametrize("name", ["demo", "other"])
def test_genai_batch_with_padding_equals_host(exported, name):
    checkpoint, bundle = exported[name]
    model = host_model(checkpoint, name)
    prompts = prompt_ids(name, checkpoint, count=3)
    assert len(set(map(len, prompts))) > 1  # the shorter ones are padded
    noise = json.loads((bundle / "manifest.json").read_text())["model"].get("rounding_noise", 0.0)
    for prompt, genai in zip(prompts, genai_greedy(bundle / PORTABLE, prompts, 8)):
        # A row that is done goes on with padding (the EOS) up to max_length.
        genai = until_eos(genai, model.config.eos_token_id)
        assert_same_greedy(model, prompt, genai, host_greedy(model, prompt, 8), noise)


def assert_same_greedy(model, prompt, device: list[int], host: list[int], rounding_noise: float) -> None:
    """The same greedy tokens, up to a step where the host's top two are within the validation bound (a float16
    cache entry that another summation order rounds the other way moves later logits by up to that much, see
    edgebit.validate.agreement): there the two may part, and what follows is another sequence."""
    import torch

    from edgebit.validate.agreement import error_bound

    for i, (d, h) in enumerate(zip(device, host)):
        if d != h:
            with torch.no_grad():
                logits = model(torch.tensor([prompt + host[:i]]))[0, -1].double()
            gap = float(logits[h] - logits[d])
            assert gap <= 2 * error_bound(float(logits.abs().max()), rounding_noise), (prompt, i, device, host, gap)
            return
    assert device == host, (prompt, device, host)


def test_genai_tokenizer_reads_the_bundle_tokenizer(exported):
    checkpoint, bundle = exported["demo"]
    assert (bundle / "tokenizer_config.json").is_file()
    ours = load_tokenizer(bundle)
    tokenizer = og.Tokenizer(og.Model(str(bundle / PORTABLE)))
    for text in TEXTS:
        ids = ours.encode(text).ids
        assert tokenizer.encode(text).tolist() == ids
        assert tokenizer.decode(np.array(ids, dtype=np.int32)) == ours.decode(ids) == text


def test_decoder_steps_agree_with_transformers(exported):
    """decoder.onnx in plain ONNX Runtime: one token from an empty cache (past length 0), two chunks of a prompt,
    then one-token steps, each carrying the presents back in; their logits against transformers' over all tokens."""
    checkpoint, bundle = exported["other"]
    session = ort.InferenceSession(str(bundle / PORTABLE / "decoder.onnx"), providers=["CPUExecutionProvider"])
    kv_heads, head_dim = OTHER_SHAPE.kv_heads, OTHER_SHAPE.head_dim
    names = [i.name for i in session.get_inputs()]
    assert names[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert names[3:5] == ["past_key_values.0.key", "past_key_values.0.value"]
    assert [o.name for o in session.get_outputs()][:3] == ["logits", "present.0.key", "present.0.value"]
    ids = np.random.default_rng(3).integers(0, OTHER_SHAPE.vocab, size=(1, 12))
    past = [np.zeros((1, kv_heads, 0, head_dim), np.float32) for _ in names[3:]]
    logits, start = [], 0
    for stop in (1, 5, 10, 11, 12):
        feeds = {"input_ids": ids[:, start:stop], "attention_mask": np.ones((1, stop), np.int64),
                 "position_ids": np.arange(start, stop)[None], **dict(zip(names[3:], past))}
        out = session.run(None, feeds)
        assert out[0].shape == (1, stop - start, OTHER_SHAPE.vocab)
        assert all(p.shape == (1, kv_heads, stop, head_dim) for p in out[1:])
        logits.append(out[0])
        past, start = out[1:], stop
    result = compare_logits(np.concatenate(logits, axis=1), transformers_logits(checkpoint, torch.from_numpy(ids)))
    assert result.passed, result.describe()


def test_runner_still_validates(exported):
    """The directory's own model.onnx and runner are unchanged by the GenAI files beside them."""
    _, bundle = exported["other"]
    result = run_cli("validate", bundle, "--device", "local", "--threads", 2)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "onnx-portable" in result.stdout


# Debian bookworm's arm64 Python and what it loads, for qemu-user -L (the wheels need glibc >= 2.28; bookworm has 2.36)
ARM64_PYTHON_DEBS = ("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "libstdc++6",
                     "libgcc-s1", "libexpat1", "zlib1g", "libffi8", "libssl3", "libbz2-1.0", "liblzma5")
ARM64_GENERATE = """
import json, sys
import numpy as np
import onnxruntime_genai as og
folder, prompt, new_tokens, text = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
model = og.Model(folder)
params = og.GeneratorParams(model)
params.set_search_options(do_sample=False, max_length=len(prompt) + new_tokens)
generator = og.Generator(model, params)
generator.append_tokens(np.array([prompt], dtype=np.int32))
while not generator.is_done():
    generator.generate_next_token()
print(json.dumps({"tokens": generator.get_sequence(0)[len(prompt):].tolist(),
                  "encoded": og.Tokenizer(model).encode(text).tolist()}))
"""


def arm64_python() -> tuple[Path, Path]:
    """(root, site-packages): Debian's arm64 python3.11 unpacked, and the aarch64 wheels of the versions this
    process uses of numpy, onnxruntime and onnxruntime-genai, cached under edgebit's cache directory."""
    import onnxruntime

    def python_root(staging: Path) -> None:
        with tempfile.TemporaryDirectory() as debs:
            for deb in provision.download_debs("bookworm", "arm64", ARM64_PYTHON_DEBS, Path(debs)):
                subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True)

    def site(staging: Path) -> None:
        with tempfile.TemporaryDirectory() as wheels:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                            "--python-version", "3.11", "--platform", provision.WHEEL_PLATFORMS["arm64"],
                            "--platform", "manylinux2014_aarch64", "-d", wheels, f"numpy=={np.__version__}",
                            f"onnxruntime=={onnxruntime.__version__}", f"onnxruntime-genai=={og.__version__}"],
                           check=True)
            for wheel in Path(wheels).glob("*.whl"):
                zipfile.ZipFile(wheel).extractall(staging)

    cache = provision.cache_dir() / "genai-arm64"
    return (provision.cached_build(cache / "python3.11-bookworm", python_root),
            provision.cached_build(cache / f"site-ort{onnxruntime.__version__}-genai{og.__version__}", site))


@pytest.mark.cross
@pytest.mark.qemu
@pytest.mark.slow
def test_genai_on_emulated_arm64_equals_host(work):
    """The demo exported for arm64: its onnx-portable directory in onnxruntime-genai's aarch64 wheel, run by
    Debian's arm64 Python under qemu-user (the target's CPU model), generates the host's greedy tokens."""
    bundle = work / "demo-arm64.bundle"
    run_cli("export", "demo", "-t", "arm64", "--runtime", "onnx-portable", "-o", bundle, "--max-seq-len",
            MAX_SEQ_LEN, check=True)
    root, site = arm64_python()
    target = resolve_target("arm64")
    [prompt] = prompt_ids("demo", EMBEDDED_MODELS["demo"])
    result = subprocess.run(
        [str(provision.qemu_binary(target.qemu)), "-cpu", target.qemu_cpu, "-L", str(root),
         str(root / "usr/bin/python3.11"), "-c", ARM64_GENERATE, str(bundle / PORTABLE), json.dumps(prompt),
         str(NEW_TOKENS), TEXTS[1]],
        capture_output=True, text=True, timeout=600, env={"PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"})
    assert result.returncode == 0, result.stderr
    emulated = json.loads(result.stdout.strip().splitlines()[-1])
    assert emulated["tokens"] == host_greedy(host_model(EMBEDDED_MODELS["demo"]), prompt, NEW_TOKENS)
    assert emulated["encoded"] == load_tokenizer(bundle).encode(TEXTS[1]).ids
