"""``generate --chat`` formats the prompt with the checkpoint's chat template exactly as transformers does, and a
Hugging Face cache folder (``models--ORG--NAME`` with refs/ and snapshots/ of symlinks into blobs/) is a checkpoint
as it is."""

import hashlib
import json
import shutil

import pytest

from cli_helpers import assert_user_error, run_cli
from edgebit.cli import EMBEDDED_MODELS

DEMO = EMBEDDED_MODELS["demo"]
TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] | trim }}{{ eos_token }}\n"
            "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


@pytest.fixture
def chat_model(tmp_path):
    directory = tmp_path / "chat-demo"
    shutil.copytree(DEMO, directory)
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": TEMPLATE, "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
         "tokenizer_class": "PreTrainedTokenizerFast"}))
    return directory


@pytest.mark.slow  # generates with the demo model through the CLI
def test_chat_prompt_matches_transformers(chat_model):
    from transformers import AutoTokenizer

    import edgebit
    from edgebit.generate import Sampling, generate_ids, load_tokenizer

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a list?"}]
    reference = AutoTokenizer.from_pretrained(str(chat_model))
    ids = reference.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    expected = load_tokenizer(chat_model).decode(generate_ids(edgebit.load(chat_model), list(ids),
                                                              Sampling(8, 0.0, 0, 0)))
    result = run_cli("generate", chat_model, "--chat", "--system", "Be brief.", "-p", "What is a list?",
                     "--temperature", 0, "-n", 8, check=True)
    assert result.stdout.rstrip("\n") == "What is a list?" + expected


def test_chat_needs_a_template():
    assert_user_error(run_cli("generate", "demo", "--chat", "-p", "hi"), "no tokenizer_config.json", "drop --chat")
    assert_user_error(run_cli("generate", "demo", "--system", "x", "-p", "hi"), "add --chat")


def hf_cache(root, snapshots=("0123abcd",), ref="0123abcd"):
    """A cache folder for the demo as huggingface_hub lays it out."""
    repo = root / "models--edgebit--bitnet-demo"
    (repo / "blobs").mkdir(parents=True)
    for commit in snapshots:
        (repo / "snapshots" / commit).mkdir(parents=True)
        for source in DEMO.iterdir():
            blob = repo / "blobs" / hashlib.sha1(source.read_bytes()).hexdigest()
            shutil.copyfile(source, blob)
            (repo / "snapshots" / commit / source.name).symlink_to(f"../../blobs/{blob.name}")
    if ref is not None:
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(ref)
    return repo


def test_hf_cache_folder_is_a_checkpoint(tmp_path):
    repo = hf_cache(tmp_path)
    demo = json.loads(run_cli("inspect", "demo", "--json", check=True).stdout)
    for path in (repo, repo / "snapshots" / "0123abcd"):
        assert json.loads(run_cli("inspect", path, "--json", check=True).stdout) == demo


def test_hf_cache_folder_problems_are_one_line(tmp_path):
    assert_user_error(run_cli("inspect", hf_cache(tmp_path / "a", ref="ffff")), "refs/main names 'ffff'")
    assert_user_error(run_cli("inspect", hf_cache(tmp_path / "b", snapshots=("aaaa", "bbbb"), ref=None)),
                      "2 snapshots and no refs/main")


def test_default_bundle_name_of_a_cache_folder(tmp_path):
    from edgebit.checkpoints.hf_cache import checkpoint_name

    repo = hf_cache(tmp_path)
    assert checkpoint_name(repo) == checkpoint_name(repo / "snapshots" / "0123abcd") == "bitnet-demo"
    assert checkpoint_name(DEMO) == "bitnet-demo"
