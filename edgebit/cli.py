"""The ``edgebit`` command line: thin wrappers that parse arguments, call the library and print.

User errors (:class:`edgebit.errors.EdgebitError`) print one line on stderr and exit with status 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from edgebit.errors import EdgebitError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Export and deploy 1-bit and 1.58-bit language models to edge devices.")
console = Console()
USER_ERROR_EXIT = 2
EMBEDDED_MODELS = {"demo": Path(__file__).parent / "demo" / "bitnet-demo"}

ModelArg = typer.Argument(..., help="checkpoint directory, or 'demo' for the embedded demo model")
AllowPickle = typer.Option(False, "--allow-pickle", help="permit pickled pytorch_model.bin weights (runs code!)")
Sha256 = typer.Option(None, "--sha256", metavar="FILE=HEX", help="pin a file of the checkpoint to a sha256 (repeatable)")


def resolve_model(name: str) -> Path:
    return EMBEDDED_MODELS.get(name, Path(name))


def _parse_pins(pins: Optional[list[str]]) -> dict[str, str]:
    parsed = {}
    for pin in pins or []:
        name, sep, digest = pin.partition("=")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
            raise EdgebitError(f"--sha256 {pin!r}: expected FILE=HEX with a 64-digit hex sha256")
        parsed[name] = digest
    return parsed


def _load(model: str, allow_pickle: bool, sha256: Optional[list[str]]):
    from edgebit.checkpoints import load_checkpoint

    return load_checkpoint(resolve_model(model), allow_pickle=allow_pickle, sha256=_parse_pins(sha256))


@app.command()
def inspect(model: str = ModelArg, as_json: bool = typer.Option(False, "--json", help="print JSON"),
            allow_pickle: bool = AllowPickle, sha256: Optional[list[str]] = Sha256) -> None:
    """Architecture, parameter counts, bits per weight and packed size of a checkpoint."""
    from edgebit.summary import summarize

    info = summarize(_load(model, allow_pickle, sha256))
    if as_json:
        print(json.dumps(info, indent=2))
        return
    config = info["config"]
    table = Table(title=f"{resolve_model(model)}  ({info['family']}, layout {info['layout']})", show_header=False)
    table.add_row("architecture", f"{config['num_hidden_layers']} layers, hidden {config['hidden_size']}, "
                  f"FFN {config['intermediate_size']} ({config['hidden_act']}), heads {config['num_attention_heads']}"
                  f"/{config['num_key_value_heads']} KV, vocab {config['vocab_size']}, "
                  f"{'tied' if config['tie_word_embeddings'] else 'untied'} embeddings")
    params = info["parameters"]
    table.add_row("parameters", f"{params['total']:,} ({params['ternary']:,} ternary in "
                  f"{info['ternary_tensors']} tensors, {params['embedding'] + params['lm_head']:,} embedding/head, "
                  f"{params['other_full_precision']:,} other)")
    table.add_row("bits per weight", f"{info['bits_per_ternary_weight']:.3f} ternary, "
                  f"{info['bits_per_weight_overall']:.3f} overall")
    packed = info["packed_bytes"]
    table.add_row("packed size", f"{packed['total'] / 1e6:.2f} MB ({packed['ternary'] / 1e6:.2f} MB ternary + "
                  f"{packed['full_precision'] / 1e6:.2f} MB full precision); fp16 would be "
                  f"{info['fp16_bytes'] / 1e6:.2f} MB ({info['compression_vs_fp16']:.1%} smaller)")
    console.print(table)


@app.command()
def generate(model: str = ModelArg, prompt: str = typer.Option(..., "--prompt", "-p", help="text to continue"),
             max_new_tokens: int = typer.Option(40, "--max-new-tokens", "-n", min=1),
             temperature: float = typer.Option(0.8, min=0.0, help="0 for greedy decoding"),
             top_k: int = typer.Option(40, "--top-k", min=0), seed: int = typer.Option(0),
             allow_pickle: bool = AllowPickle, sha256: Optional[list[str]] = Sha256) -> None:
    """Generate text on the host with the KV cache (prefill, then one token per step)."""
    from edgebit.generate import Sampling, generate_text, load_tokenizer

    tokenizer = load_tokenizer(resolve_model(model))
    loaded = _load(model, allow_pickle, sha256)
    text = generate_text(loaded, tokenizer, prompt, Sampling(max_new_tokens, temperature, top_k, seed))
    console.print(f"[bold]{prompt}[/bold]{text}", highlight=False)


@app.command()
def convert(model: str = ModelArg, output: Path = typer.Option(..., "-o", "--output", help="directory to write"),
            encoding: str = typer.Option("planar2", help="planar2 (compute layout) or base3 (1.6 bits/weight)"),
            allow_pickle: bool = AllowPickle, sha256: Optional[list[str]] = Sha256) -> None:
    """Convert a checkpoint into edgebit's packed format (written atomically)."""
    from edgebit.checkpoints.edgebit_format import ENCODINGS, save_bitnet

    if encoding not in ENCODINGS:
        raise EdgebitError(f"--encoding {encoding!r}: choose one of {', '.join(ENCODINGS)}")
    source = resolve_model(model)
    tokenizer = source / "tokenizer.json"
    save_bitnet(_load(model, allow_pickle, sha256), output, encoding,
                tokenizer_file=tokenizer if tokenizer.is_file() else None)
    console.print(f"wrote {output}")


def main() -> None:
    """Console entry point: typer handles usage errors; edgebit's user errors become one line and exit 2."""
    try:
        app()
    except EdgebitError as exc:
        print(f"edgebit: error: {exc}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
