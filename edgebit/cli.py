"""The ``edgebit`` command line: thin wrappers that parse arguments, call the library and print.

User errors (:class:`edgebit.errors.EdgebitError`) print one line on stderr and exit with status 2; Ctrl-C prints one
line and exits with status 130; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from edgebit.devices import RUN_TIMEOUT_S, devices_help
from edgebit.errors import EdgebitError
from edgebit.export import HEAD_PRECISIONS, KV_CACHE_PRECISIONS
from edgebit.runtimes import choices_help as runtimes_help

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Export and deploy 1-bit and 1.58-bit language models to edge devices.")
console = Console()


def _print_version(value: bool) -> None:
    if value:
        from edgebit import __version__

        print(f"edgebit {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="print edgebit's version and exit")) -> None:
    """Export and deploy 1-bit and 1.58-bit language models to edge devices."""


USER_ERROR_EXIT = 2
INTERRUPTED_EXIT = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
EMBEDDED_MODELS = {"demo": Path(__file__).parent / "demo" / "bitnet-demo",
                   "bimamba-demo": Path(__file__).parent / "demo" / "bimamba-demo"}

ModelArg = typer.Argument(..., help="checkpoint directory, or 'demo' / 'bimamba-demo' for an embedded demo model")
AllowPickle = typer.Option(False, "--allow-pickle", help="permit pickled pytorch_model.bin weights (runs code!)")
Sha256 = typer.Option(None, "--sha256", metavar="FILE=HEX", help="pin a file of the checkpoint to a sha256 (repeatable)")
Trust = typer.Option(None, "--trust", metavar="PUBKEY", help="only a bundle signed by one of these Ed25519 public keys "
                     "(KEYFILE.pub of edgebit keygen, or a file of several; repeatable; default: $EDGEBIT_TRUST, "
                     "files separated by ':')")
TRUST_ENV = "EDGEBIT_TRUST"


def resolve_model(name: str) -> Path:
    """An embedded demo's directory, a checkpoint directory, or the snapshot a Hugging Face cache folder names."""
    from edgebit.checkpoints.hf_cache import resolve_checkpoint_dir

    return EMBEDDED_MODELS.get(name) or resolve_checkpoint_dir(Path(name))


def _parse_pins(pins: Optional[list[str]]) -> dict[str, str]:
    parsed = {}
    for pin in pins or []:
        name, sep, digest = pin.partition("=")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
            raise EdgebitError(f"--sha256 {pin!r}: expected FILE=HEX with a 64-digit hex sha256")
        parsed[name] = digest
    return parsed


def _load_options(allow_pickle: bool, sha256: Optional[list[str]]):
    from edgebit.checkpoints import LoadOptions

    return LoadOptions(allow_pickle, _parse_pins(sha256))


def _open_bundle(path: Path, trust: Optional[list[Path]]):
    """The bundle at ``path``; with --trust (or $EDGEBIT_TRUST), only if a trusted key signed it and no file changed
    since: checked here, once, before any device is opened or anything pushed."""
    from edgebit.bundle import Bundle
    from edgebit.bundle.signing import load_trusted_keys, open_trusted

    keys = trust or [Path(p) for p in os.environ.get(TRUST_ENV, "").split(os.pathsep) if p]
    return open_trusted(path, load_trusted_keys(keys)) if keys else Bundle.open(path)


def _load(model: str, allow_pickle: bool, sha256: Optional[list[str]]):
    from edgebit.checkpoints import load_checkpoint

    return load_checkpoint(resolve_model(model), _load_options(allow_pickle, sha256))


@app.command()
def inspect(model: str = ModelArg, as_json: bool = typer.Option(False, "--json", help="print JSON"),
            allow_pickle: bool = AllowPickle, sha256: Optional[list[str]] = Sha256) -> None:
    """Architecture, parameter counts, bits per weight and packed size of a checkpoint."""
    from edgebit.models import family_of

    loaded = _load(model, allow_pickle, sha256)
    family = family_of(loaded)
    info = family.summarize(loaded)
    info["head"] = head_sizes(loaded)
    from edgebit.models.kv_cache import kv_cache_bytes_per_token

    per_token = kv_cache_bytes_per_token(loaded)
    if per_token is not None:
        from edgebit.export import default_max_seq_len

        context = default_max_seq_len(loaded)
        info["kv_cache"] = {"bytes_per_token": per_token, "default_max_seq_len": context}
    if as_json:
        print(json.dumps(info, indent=2))
        return
    table = Table(title=f"{resolve_model(model)}  ({info['family']}, layout {info['layout']})", show_header=False)
    for row in family.summary_rows(info):
        table.add_row(*row)
    sizes = info["head"]["bytes"]
    table.add_row("output head", f"{info['head']['rows']:,} x {info['head']['columns']:,}"
                  f"{' (tied to the embedding)' if info['head']['tied'] else ''}: "
                  + ", ".join(f"{p} {sizes[p] / 1e6:.2f} MB" for p in HEAD_PRECISIONS)
                  + f"; export --head picks ({HEAD_PRECISIONS[0]} by default)")
    if "kv_cache" in info:
        per_token, context = info["kv_cache"]["bytes_per_token"], info["kv_cache"]["default_max_seq_len"]
        table.add_row("KV cache", f"{context:,} tokens (export's default --max-seq-len): "
                      + ", ".join(f"{p} {per_token[p] * context / 1e6:.1f} MB" for p in KV_CACHE_PRECISIONS)
                      + f"; export --kv-cache picks ({KV_CACHE_PRECISIONS[0]} by default)")
    console.print(table)


@app.command()
def generate(model: str = typer.Argument(..., help="checkpoint directory, 'demo', or a bundle (with --device)"),
             prompt: str = typer.Option(..., "--prompt", "-p", help="text to continue"),
             device: Optional[str] = typer.Option(None, "--device", "-d", help=f"run a bundle here: {devices_help()}"),
             max_new_tokens: int = typer.Option(40, "--max-new-tokens", "-n", min=1),
             temperature: float = typer.Option(0.8, min=0.0, help="0 for greedy decoding"),
             top_k: int = typer.Option(40, "--top-k", min=0, help="sample from the k likeliest tokens (0: all)"),
             top_p: float = typer.Option(1.0, "--top-p", help="nucleus sampling: the likeliest tokens that make up "
                                         "this probability (1: off)"),
             repetition_penalty: float = typer.Option(1.0, "--repetition-penalty", help="> 1 discourages tokens "
                                                      "already seen (1: off)"),
             seed: int = typer.Option(0, help="the same seed picks the same tokens on the host and on a device"),
             stop: Optional[list[str]] = typer.Option(None, "--stop", help="stop when this text appears "
                                                      "(repeatable)"),
             chat: bool = typer.Option(False, "--chat", help="the prompt is a user message, formatted with the "
                                       "chat template of the model's tokenizer_config.json"),
             system: Optional[str] = typer.Option(None, "--system", help="with --chat: a system message"),
             runtime: Optional[str] = typer.Option(None, "--runtime", "-r", help="which of the bundle's runtimes "
                                                   "(default: its first)"),
             timeout: float = typer.Option(RUN_TIMEOUT_S, "--timeout", min=0.001, help="with --device: seconds the "
                                           "runner may take"),
             trust: Optional[list[Path]] = Trust,
             head: str = typer.Option("fp32", "--head", help="on the host: the output head's precision "
                                      f"({' | '.join(HEAD_PRECISIONS)}), as a bundle exported with --head has it"),
             kv_cache: str = typer.Option("fp32", "--kv-cache", help="on the host: the KV cache's precision "
                                          f"({' | '.join(KV_CACHE_PRECISIONS)}), as a bundle exported with "
                                          "--kv-cache has it"),
             allow_pickle: bool = AllowPickle, sha256: Optional[list[str]] = Sha256) -> None:
    """Generate text: on the host with PyTorch (a checkpoint), or on a device (a bundle and --device); the text is
    printed as it is generated."""
    from edgebit.generate import Sampling, generate_ids, load_tokenizer
    from edgebit.streaming import TextStream

    sampling = Sampling(max_new_tokens, temperature, top_k, seed, top_p, repetition_penalty)
    if system is not None and not chat:
        raise EdgebitError("--system is a message of a chat; add --chat")
    if device is not None:
        _generate_on_device(Path(model), device, prompt, chat, system, sampling, tuple(stop or ()), runtime, timeout,
                            trust)
        return
    if trust:
        raise EdgebitError("--trust checks a bundle before it goes to a device; add --device")
    tokenizer = load_tokenizer(resolve_model(model))
    prompt_ids = _prompt_ids(resolve_model(model), tokenizer, prompt, chat, system)
    _check_precisions(head, kv_cache)
    from edgebit.models.head import set_head_precision
    from edgebit.models.kv_cache import set_kv_cache_precision

    loaded = set_kv_cache_precision(set_head_precision(_load(model, allow_pickle, sha256), head), kv_cache)
    stream = TextStream(tokenizer.decode, _write_now, tuple(stop or ()))
    console.print(f"[bold]{prompt}[/bold]", end="", highlight=False)
    generate_ids(loaded, prompt_ids, sampling, getattr(loaded.config, "eos_token_id", None), stream.add)
    stream.finish()
    print(flush=True)


def _prompt_ids(directory: Path, tokenizer, prompt: str, chat: bool, system: Optional[str]) -> list[int]:
    """The prompt's token ids; with ``chat``, the chat template's text, whose special tokens are its own."""
    if not chat:
        return tokenizer.encode(prompt).ids
    from edgebit.chat import chat_prompt

    return tokenizer.encode(chat_prompt(directory, prompt, system), add_special_tokens=False).ids


def _write_now(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _generate_on_device(bundle_dir: Path, device_spec: str, prompt: str, chat: bool, system: Optional[str],
                        sampling, stops: tuple[str, ...],
                        runtime: Optional[str], timeout: float, trust: Optional[list[Path]]) -> None:
    from edgebit.bundle import TOKENIZER
    from edgebit.validate.session import DeviceSession
    from edgebit.devices import open_device
    from edgebit.generate import load_tokenizer
    from edgebit.streaming import TextStream

    bundle = _open_bundle(bundle_dir, trust)
    if not bundle.has(TOKENIZER):
        raise EdgebitError(f"{bundle_dir}: the bundle has no tokenizer; use `edgebit run` with token ids")
    tokenizer = load_tokenizer(bundle.root)
    runtime = bundle.check_runtime(runtime)
    max_seq_len = bundle.manifest.model.max_seq_len
    prompt_ids = _prompt_ids(bundle.root, tokenizer, prompt, chat, system)
    if not prompt_ids:
        raise EdgebitError("the prompt is empty; give at least one token of text")
    if len(prompt_ids) + sampling.max_new_tokens > max_seq_len:
        raise EdgebitError(f"the prompt ({len(prompt_ids)} tokens) + --max-new-tokens {sampling.max_new_tokens} "
                           f"exceed the bundle's max_seq_len {max_seq_len}; export with a larger --max-seq-len")
    stream = TextStream(tokenizer.decode, _write_now, stops)
    eos = bundle.manifest.model.config.get("eos_token_id")
    with DeviceSession(bundle, open_device(device_spec, bundle.target), timeout=timeout) as session:
        console.print(f"[bold]{prompt}[/bold]", end="", highlight=False)
        session.generate(prompt_ids, sampling.max_new_tokens, runtime, sampling,
                         eos if isinstance(eos, int) else None, stream.add)
        stream.finish()
        print(flush=True)
        timings = session.timings
    if timings.get("decode_seconds"):
        console.print(f"[dim]{runtime} on {session.device.describe()}: prefill {timings['prefill_tokens']} tokens in "
                      f"{timings['prefill_seconds']:.3f} s, decode {timings['decode_tokens'] / timings['decode_seconds']:.1f}"
                      " tokens/s (emulated devices are slow)[/dim]")


@app.command()
def convert(model: str = ModelArg, output: Path = typer.Option(..., "-o", "--output", help="directory to write"),
            encoding: Optional[str] = typer.Option(None, help="BitNet: planar2 (compute layout, the default) or base3 "
                                                   "(1.6 bits/weight); Bi-Mamba: planar1"),
            allow_pickle: bool = AllowPickle, sha256: Optional[list[str]] = Sha256) -> None:
    """Convert a checkpoint into edgebit's packed format (written atomically)."""
    from edgebit.checkpoints.edgebit_format import encodings, save_checkpoint

    if encoding is not None and encoding not in encodings():
        raise EdgebitError(f"--encoding {encoding!r}: choose one of {', '.join(encodings())}")
    source = resolve_model(model)
    tokenizer = source / "tokenizer.json"
    save_checkpoint(_load(model, allow_pickle, sha256), output, encoding,
                tokenizer_file=tokenizer if tokenizer.is_file() else None)
    console.print(f"wrote {output}")


@app.command()
def binarize(model: str = typer.Argument(..., help="full-precision Mamba-2 checkpoint (transformers or mamba_ssm)"),
             output: Path = typer.Option(..., "-o", "--output", help="directory to write"),
             allow_pickle: bool = AllowPickle, sha256: Optional[list[str]] = Sha256) -> None:
    """Turn a full-precision Mamba-2 into an edgebit Bi-Mamba checkpoint (1-bit in/out_proj, fitted alpha/beta)."""
    from edgebit.checkpoints.edgebit_format import save_checkpoint
    from edgebit.models import families, family_of

    loaded = _load(model, allow_pickle, sha256)
    if not family_of(loaded).binarizes:
        takes = ", ".join(f.description for f in families().values() if f.binarizes)
        raise EdgebitError(f"{model} is a {loaded.family} checkpoint; binarize takes a full-precision checkpoint of: "
                           f"{takes}")
    source = resolve_model(model)
    tokenizer = source / "tokenizer.json"
    save_checkpoint(loaded, output, tokenizer_file=tokenizer if tokenizer.is_file() else None)
    error = loaded.binarization_error
    console.print(f"wrote {output}" + (f"; worst relative reconstruction error of a projection: {error:.4f}"
                                       if error is not None else " (signs, alpha and beta taken from the checkpoint)"))


@app.command()
def targets(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List the deployment targets (targets/*.toml) and their board aliases."""
    from edgebit.targets import all_targets

    found = all_targets()
    if as_json:
        print(json.dumps({name: {"description": t.description, "aliases": list(t.aliases), "triple": t.triple,
                                 "features": list(t.features), "tvm": t.tvm_target_json()}
                          for name, t in found.items()}, indent=2))
        return
    table = Table("target", "aliases", "features", "description")
    for t in found.values():
        table.add_row(t.name, ", ".join(t.aliases), ", ".join(t.features), t.description)
    console.print(table)


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Check every external tool edgebit uses and say how to install what is missing."""
    from edgebit.toolchain.doctor import checks

    found = checks()
    if as_json:
        print(json.dumps([c.__dict__ for c in found], indent=2))
    else:
        table = Table("tool", "status", "how to install")
        for c in found:
            table.add_row(c.name, f"[green]ok[/green] {c.detail}" if c.ok else f"[red]{c.detail}[/red]",
                          "" if c.ok else c.fix)
        console.print(table)
    if not all(c.ok for c in found):
        raise typer.Exit(1)


@app.command()
def export(model: str = ModelArg, target: str = typer.Option(..., "--target", "-t", help="target or board alias "
                                                                "(edgebit targets)"),
           output: Optional[Path] = typer.Option(None, "-o", "--output", help="bundle directory "
                                                 "(default: MODEL-TARGET.bundle)"),
           max_seq_len: Optional[int] = typer.Option(None, "--max-seq-len", min=8, help="the longest sequence "
                                                     "(KV cache rows) on the device; default: the model's context, "
                                                     "at most 4096"),
           runtime: list[str] = typer.Option(["tvm"], "--runtime", "-r", help=f"{runtimes_help()} (repeatable)"),
           head: str = typer.Option(HEAD_PRECISIONS[0], "--head", help="precision of the output head and tied "
                                    f"embedding: {' | '.join(HEAD_PRECISIONS)} (int8: 4x fewer bytes per token than fp32, q4: 7x, "
                                    "perplexity cost recorded in the manifest)"),
           kv_cache: str = typer.Option(KV_CACHE_PRECISIONS[0], "--kv-cache", help="precision of the KV cache on "
                                        f"the device: {' | '.join(KV_CACHE_PRECISIONS)} (fp16: half the memory and "
                                        "the bytes a step at depth reads; perplexity cost recorded in the manifest)"),
           sign: Optional[Path] = typer.Option(None, "--sign", metavar="KEYFILE", help="sign manifest.json with this "
                                               "Ed25519 private key (edgebit keygen) into manifest.sig"),
           allow_pickle: bool = AllowPickle, sha256: Optional[list[str]] = Sha256) -> None:
    """Export a checkpoint for a target into a bundle (written atomically), for one or more runtimes."""
    from edgebit.export import ExportConfig, StageTimer, export_bundle
    from edgebit.checkpoints.hf_cache import checkpoint_name
    from edgebit.targets import resolve_target

    resolved = resolve_target(target)
    source = resolve_model(model)
    output = output or Path(f"{checkpoint_name(source)}-{resolved.name}.bundle")
    timer = StageTimer(lambda name, seconds: console.print(f"  [green]done[/green] {name:<40} {seconds:7.2f} s"))
    console.print(f"exporting {source} for {resolved.name} -> {output}")
    skipped = lambda name, reason: console.print(f"  [yellow]skipped[/yellow] {name}: {reason}")
    _check_precisions(head, kv_cache)
    config = ExportConfig(source, resolved, output, max_seq_len, tuple(runtime), _load_options(allow_pickle, sha256),
                          signing_key=sign, head=head, kv_cache=kv_cache)
    try:
        with _interrupt_stops_child_processes():
            bundle = export_bundle(config, timer, skipped)
    except Interrupted:
        raise Interrupted(f"nothing was written to {output}") from None
    size = sum(bundle.file(f).stat().st_size for f in bundle.manifest.files)
    console.print(f"  {head_text(bundle.manifest.model.head)}")
    if bundle.manifest.model.kv_cache is not None:
        console.print(f"  {kv_cache_text(bundle.manifest.model.kv_cache)}")
    console.print(f"wrote {output} ({len(bundle.manifest.files)} files, {size / 1e6:.1f} MB) in "
                  f"{sum(timer.timings.values()):.1f} s" + (", signed" if sign else ""))


@app.command()
def keygen(output: Path = typer.Option(..., "-o", "--output", metavar="KEYFILE", help="private key to write (PEM "
                                       "PKCS#8, mode 0600); the public key goes to KEYFILE.pub (PEM)"),
           force: bool = typer.Option(False, "--force", help="replace existing key files")) -> None:
    """Create an Ed25519 key pair for signed bundles: export --sign KEYFILE, then --trust KEYFILE.pub on devices."""
    from edgebit.bundle.signing import fingerprint, generate_key

    public = generate_key(output, force)
    print(f"wrote {output} (private: keep it secret) and {output}.pub (public: for --trust); key {fingerprint(public)}")


DeviceOpt = typer.Option("qemu", "--device", "-d", help=devices_help())
DevicesOpt = typer.Option(["qemu"], "--device", "-d", help=f"{devices_help()}; repeat to run on several devices in "
                          "parallel")
ThreadsOpt = typer.Option(1, "--threads", min=1, help="worker threads on the device")
TimeoutOpt = typer.Option(RUN_TIMEOUT_S, "--timeout", min=0.001, help="seconds one runner command may take on the device "
                          "(it is stopped after that)")
RuntimeOpt = typer.Option(None, "--runtime", "-r", help="one of the bundle's runtimes (default: its first)")


@app.command()
def run(bundle: Path = typer.Argument(..., help="bundle directory (edgebit export)"), device: str = DeviceOpt,
        input: Path = typer.Option(..., "--input", "-i", help="int64 token ids [B, T] (.npy)"),
        output: Path = typer.Option(..., "--output", "-o", help="float32 logits [B, T, V] (.npy)"),
        threads: int = ThreadsOpt, runtime: Optional[str] = RuntimeOpt, timeout: float = TimeoutOpt,
        trust: Optional[list[Path]] = Trust) -> None:
    """Run a bundle on a device: token ids in, logits out."""
    import numpy as np

    from edgebit.validate.session import DeviceSession
    from edgebit.devices import open_device

    try:
        ids = np.load(input, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise EdgebitError(f"{input}: cannot read token ids ({exc}); save an int64 [B, T] array with numpy.save")
    if ids.dtype.kind not in "iu" or ids.ndim != 2:
        raise EdgebitError(f"{input}: expected an integer array [B, T], got {ids.dtype} {list(ids.shape)}")
    opened = _open_bundle(bundle, trust)
    runtime = opened.check_runtime(runtime)
    vocab = opened.manifest.model.vocab_size
    if ids.size and (ids.min() < 0 or ids.max() >= vocab):
        raise EdgebitError(f"{input}: token ids must be in [0, {vocab}) for this model")
    with DeviceSession(opened, open_device(device, opened.target), threads=threads, timeout=timeout) as session:
        logits = session.logits(ids.astype(np.int64), runtime)
    np.save(output, logits)
    console.print(f"wrote {output}: float32 {list(logits.shape)} ({runtime})")


@app.command()
def validate(bundle: Path = typer.Argument(..., help="bundle directory (edgebit export)"),
             device: list[str] = DevicesOpt,
             as_json: bool = typer.Option(False, "--json", help="print JSON"), threads: int = ThreadsOpt,
             runtime: Optional[list[str]] = typer.Option(None, "--runtime", "-r", help="validate only these of the "
                                                          "bundle's runtimes (default: all of them)"),
             timeout: float = TimeoutOpt, trust: Optional[list[Path]] = Trust,
             report: Optional[Path] = typer.Option(None, "--report", metavar="FILE.html", help="also write an HTML "
                                                   "page: per-position error and top-1 agreement, perplexities, "
                                                   "bound, versions"),
             text: Optional[Path] = typer.Option(None, "--text", metavar="FILE", help="also measure the perplexity "
                                                 "of this UTF-8 text on the device (windows of up to 256 tokens)"),
             model: Optional[str] = typer.Option(None, "--model", help="with --text: the checkpoint the bundle was "
                                                 "exported from, for the host's perplexity of the text beside the "
                                                 "device's (same head precision as the bundle)"),
             allow_pickle: bool = AllowPickle) -> None:
    """Run the bundle's reference vectors on a device through each of its runtimes and compare with the host."""
    from edgebit.validate.fleet import on_devices
    from edgebit.validate.session import text_perplexity, text_windows
    from edgebit.validate.session import validate as run_validation

    opened = _open_bundle(bundle, trust)
    chosen = [opened.check_runtime(r) for r in runtime] if runtime else opened.runtimes
    windows = host_text = None
    if model is not None and text is None:
        raise EdgebitError("--model gives the host's perplexity of a --text FILE; pass one")
    if text is not None:
        windows = text_windows(_read_text_tokens(opened, text), opened.manifest.model.max_seq_len)
        if model is not None:
            host_text = _host_text_perplexity(model, opened.manifest.model, windows, allow_pickle)

    def run(session):
        reports = [run_validation(session, r) for r in chosen]
        texts = {r: text_perplexity(session, r, windows) for r in chosen} if windows is not None else {}
        return reports, texts

    outcomes = on_devices(opened, device, run, threads, timeout)
    done = [o for o in outcomes if o.error is None]
    text_results = {o.where: o.value[1] for o in done}
    for o in done:
        o.value = o.value[0]
    results = [{"device": o.where, "passed": all(r.passed for r in o.value), "seconds": o.finished - o.started,
                "started": o.started, "runtimes": [r.to_dict() for r in o.value]} for o in done]
    if as_json and done:
        single = {"device": results[0]["device"], "runtimes": results[0]["runtimes"]} if len(outcomes) == 1 else {}
        extra = {"text": {"file": str(text), "windows": list(windows.shape), "host_perplexity": host_text,
                          "device_perplexity": text_results}} if windows is not None else {}
        print(json.dumps({"bundle": str(bundle), "head": opened.manifest.model.head,
                          "kv_cache": opened.manifest.model.kv_cache, **single,
                          "passed": all(r["passed"] for r in results), "results": results, **extra}, indent=2))
    else:
        for o in done:  # one table per device: a Pi 4, a Pi 5 and a phone side by side
            console.print(_validation_table(f"{bundle} on {o.where}", o.value))
        if done:
            console.print(head_text(opened.manifest.model.head))
            if opened.manifest.model.kv_cache is not None:
                console.print(kv_cache_text(opened.manifest.model.kv_cache))
        if windows is not None and done:
            table = Table("device", "runtime", "perplexity", "host", "device - host",
                          title=f"{text}: {windows.shape[0]} window(s) of {windows.shape[1]} tokens")
            for where, by_runtime in text_results.items():
                for name, value in by_runtime.items():
                    table.add_row(where, name, f"{value:.3f}", "-" if host_text is None else f"{host_text:.3f}",
                                  "-" if host_text is None else f"{value - host_text:+.3f}")
            console.print(table)
    if report is not None and done:
        from edgebit.validate.pictures import validation_report

        validation_report(opened, [(o.where, o.value) for o in done], report)
        if not as_json:
            console.print(f"wrote {report}")
    _report_device_errors(outcomes)
    failed = [(o.where, r) for o in done for r in o.value if not r.passed]
    if failed:
        print(f"edgebit: error: {bundle} misses the accuracy bound with "
              + "; ".join(f"{r.runtime} on {where}: {r.agreement.describe()}" for where, r in failed), file=sys.stderr)
        raise typer.Exit(1)


def _read_text_tokens(opened, path: Path) -> list[int]:
    """The token ids of a user's text file, with the bundle's tokenizer."""
    from edgebit.generate import load_tokenizer

    if not (opened.root / "tokenizer.json").is_file():
        raise EdgebitError(f"{opened.root} carries no tokenizer.json: --text needs one (export from a checkpoint "
                           "that has it)")
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgebitError(f"{path}: cannot read it as UTF-8 text ({exc.__class__.__name__}); pass a text file")
    return load_tokenizer(opened.root).encode(content).ids


def _host_text_perplexity(model: str, record, windows, allow_pickle: bool) -> float:
    """The host's perplexity of the windows: the checkpoint in PyTorch, with the bundle's head and KV cache
    precisions (manifest ``model``, ``record``)."""
    from edgebit.models.head import set_head_precision
    from edgebit.models.kv_cache import set_kv_cache_precision
    from edgebit.validate.reference import host_logits, perplexity

    loaded = _load(model, allow_pickle, None)
    if loaded.config.to_dict() != record.config:
        raise EdgebitError(f"--model {model} is not the checkpoint this bundle was exported from (its config "
                           "differs); pass that checkpoint")
    set_head_precision(loaded, record.head.get("precision", "fp32"))
    set_kv_cache_precision(loaded, (record.kv_cache or {}).get("precision", "fp32"))
    return perplexity(host_logits(loaded, windows), windows)


def head_sizes(model) -> dict:
    """The output head's shape and what it (with an untied embedding) stores at each export --head precision."""
    from edgebit.models.head import head_modules
    from edgebit_ops import int8_matmul, q4_matmul

    embedding, untied = head_modules(model)
    rows, columns = getattr(model, embedding).weight.shape
    tables = 1 if untied is None else 2
    block = int8_matmul.block_size_for(columns)
    padded = -(-columns // block) * block
    q4_blocks = -(-columns // q4_matmul.block_size_for(columns))
    q4_row = q4_blocks * q4_matmul.block_size_for(columns) // 2 + 4 * q4_blocks  # codes + a float32 scale a block
    return {"rows": rows, "columns": columns, "tied": untied is None,
            "bytes": {"fp32": tables * rows * columns * 4, "int8": tables * rows * (padded + 4),
                      "q4": tables * rows * q4_row}}


def _check_precisions(head: str, kv_cache: str) -> None:
    if head not in HEAD_PRECISIONS:
        raise EdgebitError(f"--head {head}: choose one of {', '.join(HEAD_PRECISIONS)}")
    if kv_cache not in KV_CACHE_PRECISIONS:
        raise EdgebitError(f"--kv-cache {kv_cache}: choose one of {', '.join(KV_CACHE_PRECISIONS)}")


def kv_cache_text(kv_cache: dict) -> str:
    """The bundle's KV cache precision and what it cost in perplexity on the reference texts at export."""
    return _precision_text("KV cache", kv_cache, "an fp32 cache")


def head_text(head: dict) -> str:
    """The bundle's head precision and what it cost in perplexity on the reference texts at export."""
    return _precision_text("head", head, "the fp32 head")


def _precision_text(what: str, record: dict, baseline: str) -> str:
    """"WHAT PRECISION", with the reference perplexity against fp32 (``record["reference_perplexity"]``) if
    the export measured it."""
    precision = record.get("precision", "fp32")
    cost = record.get("reference_perplexity")
    if not (isinstance(cost, dict) and all(isinstance(cost.get(k), (int, float)) and cost[k] > 0
                                           for k in ("fp32", precision))) or precision == "fp32":
        return f"{what} {precision}"
    return (f"{what} {precision}: reference perplexity {cost[precision]:.3f}, {cost['fp32']:.3f} with {baseline} "
            f"({(cost[precision] / cost['fp32'] - 1) * 100:+.2f} %)")


def _report_device_errors(outcomes) -> None:
    """One line per device that failed; with a single device, its error is the command's error."""
    errors = [o for o in outcomes if o.error is not None]
    if len(outcomes) == 1 and errors:
        raise errors[0].error
    for o in errors:
        print(f"edgebit: error: {o.spec}: {o.error}", file=sys.stderr)
    if errors:
        raise typer.Exit(USER_ERROR_EXIT)


def _validation_table(title: str, reports) -> Table:
    """Runtime x metric, each metric with its bound and a pass mark."""
    from edgebit.validate.agreement import MAX_ABS_ERROR_FRACTION, MIN_COSINE, NOISE_FACTOR

    mark = lambda ok: "[green]ok[/green]" if ok else "[red]FAIL[/red]"
    table = Table(title=title,
                  caption=f"bounds: cosine >= {MIN_COSINE} (less where the host's rounding noise explains it), "
                          f"max abs error <= {MAX_ABS_ERROR_FRACTION:.0%} of max |logit| or {NOISE_FACTOR:g}x the "
                          "host's rounding noise, same argmax wherever the top-2 margin is clear")
    table.add_column("runtime", no_wrap=True)
    for header in ("cosine", "max err", "bound", "top-1", "ppl host", "ppl dev", ""):
        table.add_column(header)
    for r in reports:
        a = r.agreement
        table.add_row(r.runtime, f"{a.cosine:.6f}", f"{a.max_abs_error:.3g}", f"{a.error_bound:.3g}",
                      f"{a.top1_agreement:.1%}", f"{r.reference_perplexity:.2f}", f"{r.device_perplexity:.2f}",
                      mark(r.passed))
    return table


@app.command()
def bench(bundle: Path = typer.Argument(..., help="bundle directory (edgebit export)"),
          device: list[str] = DevicesOpt,
          threads: int = ThreadsOpt, prompt_tokens: int = typer.Option(32, "--prompt-tokens", min=1),
          new_tokens: int = typer.Option(32, "--new-tokens", min=2),
          repeats: int = typer.Option(3, "--repeats", min=1, help="runs per runtime; the median is shown"),
          runtime: Optional[list[str]] = typer.Option(None, "--runtime", "-r", help="only these runtimes"),
          as_json: bool = typer.Option(False, "--json", help="print JSON"), timeout: float = TimeoutOpt,
          trust: Optional[list[Path]] = Trust,
          plot: Optional[Path] = typer.Option(None, "--plot", metavar="FILE.png", help="also draw prefill and decode "
                                              "tokens/s per runtime and device")) -> None:
    """Prefill and decode tokens/s of each of the bundle's runtimes on a device, side by side (medians)."""
    from edgebit.validate.fleet import on_devices
    from edgebit.validate.session import measure_speed

    opened = _open_bundle(bundle, trust)
    chosen = [opened.check_runtime(r) for r in runtime] if runtime else opened.runtimes
    max_seq_len = opened.manifest.model.max_seq_len
    if prompt_tokens + new_tokens > max_seq_len:
        raise EdgebitError(f"--prompt-tokens + --new-tokens must fit the bundle's max_seq_len ({max_seq_len})")
    measure = lambda session: [measure_speed(session, r, prompt_tokens, new_tokens, repeats) for r in chosen]
    outcomes = on_devices(opened, device, measure, threads, timeout)
    done = [o for o in outcomes if o.error is None]
    if as_json and done:
        results = [{"device": o.where, "runtimes": [s.__dict__ for s in o.value]} for o in done]
        single = results[0] if len(outcomes) == 1 else {}
        print(json.dumps({"bundle": str(bundle), **single, "threads": threads, "results": results}, indent=2))
    elif done:
        fastest = max(s.decode_tokens_per_s for o in done for s in o.value)
        fleet = len(outcomes) > 1
        table = Table(*(["device"] if fleet else []), "runtime", "prefill tokens/s", "decode tokens/s",
                      "decode vs fastest", "peak RSS MB", "files MB", title=f"{bundle} on {done[0].where if not fleet else f'{len(done)} devices'}"
                                                 f", {threads} thread(s), median of {repeats}")
        for o in done:
            for s in o.value:
                table.add_row(*([o.where] if fleet else []), s.runtime, f"{s.prefill_tokens_per_s:.1f}",
                              f"{s.decode_tokens_per_s:.1f}", f"{s.decode_tokens_per_s / fastest:.2f}x",
                              f"{s.peak_rss_bytes / 1e6:.1f}", f"{s.runtime_bytes / 1e6:.1f}")
        console.print(table)
    if plot is not None and done:
        from edgebit.validate.pictures import speed_plot

        fleet = len(outcomes) > 1
        rows = [{"label": f"{s.runtime} @ {o.where}" if fleet else s.runtime, "prefill": s.prefill_tokens_per_s,
                 "decode": s.decode_tokens_per_s} for o in done for s in o.value]
        speed_plot(rows, f"{Path(bundle).name}, {threads} thread(s), median of {repeats}"
                         + ("" if fleet else f", {done[0].where}"), plot)
        if not as_json:
            console.print(f"wrote {plot}")
    _report_device_errors(outcomes)


@app.command("android-layout")
def android_layout(bundle: Path = typer.Argument(..., help="arm64 bundle directory (edgebit export -t android-arm64)"),
                   out: Path = typer.Argument(..., help="app source set to write into, e.g. "
                                              "examples/android/app/src/main"),
                   runtime: Optional[str] = RuntimeOpt) -> None:
    """Lay out one runtime of a bundle for an Android app: jniLibs/arm64-v8a/lib*.so and assets/edgebit/."""
    from edgebit.bundle import Bundle
    from edgebit.bundle.android import ASSETS_DIR, JNI_DIR, android_layout as layout_of, write_android_layout

    opened = Bundle.open(bundle)
    opened.verify()
    layout = layout_of(opened, runtime)
    write_android_layout(layout, out)
    print(f"wrote {out}/{JNI_DIR} ({len(layout.native)} native files) and {out}/{ASSETS_DIR} "
          f"({len(layout.assets)} assets, {len(layout.links)} links) for {layout.runtime}")


@app.command("support-matrix")
def support_matrix(markdown: bool = typer.Option(False, "--markdown", help="print the README's Markdown table"),
                   as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Which runtime runs which model family on which target (computed from the runtimes, not written by hand)."""
    from edgebit.models import family_names
    from edgebit.runtimes.support import matrix_markdown, matrix_rows, with_footnotes

    rows = matrix_rows()
    if as_json:
        print(json.dumps(rows, indent=2))
    elif markdown:
        print(matrix_markdown(rows), end="")
    else:
        cells, reasons = with_footnotes(rows)
        table = Table("target", "runtime", *family_names())
        for row in cells:
            table.add_row(*row)
        console.print(table)
        for i, reason in enumerate(reasons, 1):
            console.print(f"({i}) {reason}", highlight=False)


from edgebit.boards.cli import vm_app  # noqa: E402  (emulated boards: edgebit vm start/stop/list)

app.add_typer(vm_app, name="vm")


class Interrupted(BaseException):
    """Ctrl-C (SIGINT). Raised by main()'s handler instead of KeyboardInterrupt, which typer turns into a silent exit;
    the message, if any, says what the interrupted command left behind."""


def _interrupted(signum, frame) -> None:
    raise Interrupted()


def _child_processes() -> list[int]:
    """The pids of this process's descendants (from Linux's /proc; elsewhere none)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    parent = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, pending = [], [os.getpid()]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _stop_child_processes(grace_s: float = 1.0) -> None:
    """SIGTERM to every descendant (compilers and linkers an export started: Ctrl-C in a terminal reaches them, a
    SIGINT sent to edgebit alone does not), then SIGKILL to those still running after ``grace_s``."""
    pids = _child_processes()
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, signum)
            except OSError:
                pass
        deadline = time.monotonic() + grace_s
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if _running(pid)]
            time.sleep(0.02)
        if not pids:
            return


@contextmanager
def _interrupt_stops_child_processes():
    """While the body runs, Ctrl-C first stops this process's children, then raises Interrupted: the cleanup that
    follows (removing staging and scratch directories) races with no compiler still writing there. Any exception
    after a Ctrl-C is Interrupted: TVM's FFI turns one raised in a Python callback (a custom op's converter, which the
    handler may interrupt) into a RuntimeError."""
    interrupts = []

    def interrupted(signum, frame) -> None:
        interrupts.append(signum)
        _stop_child_processes()
        raise Interrupted()

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    except Exception as exc:
        if interrupts:
            raise Interrupted() from exc
        raise
    finally:
        signal.signal(signal.SIGINT, previous)


def main() -> None:
    """Console entry point: typer handles usage errors; edgebit's user errors become one line and exit 2; Ctrl-C
    becomes one line and exit 130."""
    signal.signal(signal.SIGINT, _interrupted)
    try:
        app()
    except EdgebitError as exc:
        print(f"edgebit: error: {exc}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
    except Interrupted as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C while saying so is no traceback
        print("edgebit: interrupted" + (f"; {exc}" if str(exc) else ""), file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT)
