"""Fuzzing edgebit's readers: whatever manifest.json, checkpoint (config.json, safetensors) or tokenizer.json they
get, only an EdgebitError comes out (one line in the CLI), never another exception, a crash or a hang.

A few hundred seeded, deterministic cases per reader (tests/fuzz/readers.py); ``benchmarks/fuzz_readers.py --cases
10000`` is the long run, and prints a reproducer for any failure.
"""

import random

import pytest

from fuzz import mutators
from fuzz.readers import readers, run_reader

# (reader, cases): about 1 s for the manifest and 2-3 s for the tokenizer; the checkpoint reader's seeds are written
# with transformers (a few seconds to import), so it runs with the slow tests.
READERS = [pytest.param("manifest", 400), pytest.param("tokenizer", 150),
           pytest.param("checkpoint", 400, marks=pytest.mark.slow),
           pytest.param("checkpoint-demo", 100, marks=pytest.mark.slow)]


@pytest.fixture(scope="session")
def fuzz_work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def assert_only_edgebit_errors(counts, failures, cases):
    report = "\n\n".join(f"{f.reproducer()}\n{f.trace}" for f in failures[:3])
    assert not failures, f"{len(failures)} of {cases} cases failed; the first:\n{report}"
    assert counts.cases == cases
    # Both outcomes occur: the mutations break inputs and the seeds are valid (else the fuzzer tests nothing).
    assert counts.edgebit_errors and counts.accepted, counts


@pytest.mark.parametrize("name,cases", READERS)
def test_reader_raises_only_edgebit_errors(name, cases, fuzz_work):
    counts, failures = run_reader(readers()[name], cases, seed=0, work=fuzz_work / name)
    assert_only_edgebit_errors(counts, failures, cases)


@pytest.mark.slow
def test_manifest_of_a_real_exported_bundle(fuzz_work):
    """The manifest of `edgebit export demo` (the small bundle above is written by BundleWriter with stand-in files)."""
    counts, failures = run_reader(readers()["manifest-real"], 200, seed=1, work=fuzz_work / "manifest-real")
    assert_only_edgebit_errors(counts, failures, 200)


def test_cases_are_reproducible(tmp_path):
    """A case is a function of (reader, seed, index): the reproducer a failure prints reruns exactly that input."""
    reader = readers()["manifest"]
    reader.prepare(tmp_path)
    written = []
    for attempt in range(2):
        case = tmp_path / f"case{attempt}"
        case.mkdir()
        reader.make_case(random.Random("manifest:7:42"), case)
        written.append((case / "manifest.json").read_bytes())
    assert written[0] == written[1]


def test_seed_tokenizers_are_the_same_on_every_run(tmp_path):
    from fuzz.readers import write_seed_tokenizers

    write_seed_tokenizers(tmp_path / "a")
    write_seed_tokenizers(tmp_path / "b")
    for path in (tmp_path / "a").iterdir():
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes(), path.name


def test_safetensors_mutations_keep_the_format_where_they_mean_to():
    """The tensor mutations write well-formed files (so they reach the loaders, past the header checks)."""
    import torch
    from safetensors.torch import load, save

    data = save({"a": torch.arange(12, dtype=torch.float32).reshape(3, 4), "b": torch.ones(5, dtype=torch.uint8)})
    header, body = mutators.split_safetensors(data)
    loaded = 0
    for seed in range(50):
        mutated = mutators.mutate_safetensors_tensor(header, body, random.Random(seed))
        try:
            load(mutated)
            loaded += 1
        except Exception:  # noqa: BLE001 - a few dtypes (F6) are not understood by this safetensors
            pass
    assert loaded >= 40
