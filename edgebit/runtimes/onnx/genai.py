"""The onnx-portable runtime directory as an ONNX Runtime GenAI model folder.

For a family that offers a GenAI decoder (``Family.genai_decoder``, BitNet), the portable runtime directory also
holds ``decoder.onnx`` (the step in GenAI's convention with a growing KV cache, stock operators only, exported as
model.onnx is) and ``genai_config.json`` naming it, so ``onnxruntime_genai.Model(runtimes/onnx-portable)`` loads it
unchanged. The tokenizer stays at the bundle's root: ``model.tokenizer_dir`` points GenAI two folders up.

The decoder has its own copy of the weights (the edgebit runner's model.onnx keeps its fixed-size cache form).
"""

from __future__ import annotations

import json
from pathlib import Path

from edgebit.models import family_of

DECODER_FILE = "decoder.onnx"
CONFIG_FILE = "genai_config.json"
TOKENIZER_DIR = "../.."  # runtimes/<name>/ -> the bundle's root, where tokenizer.json lives (bundle.layout)


def has_genai_decoder(model) -> bool:
    return family_of(model).genai_decoder is not None


def export_genai(model, context_length: int, work: Path) -> dict[str, Path]:
    """Write the GenAI decoder and its genai_config.json into ``work``; {name in the runtime directory: file}."""
    from edgebit.runtimes.onnx.export import save_onnx

    decoder = family_of(model).genai_decoder(model, context_length)
    save_onnx(model, "portable", lambda: decoder, work / DECODER_FILE)
    config = json.loads(json.dumps(decoder.config))  # a copy to fill in
    config["model"]["decoder"]["filename"] = DECODER_FILE
    config["model"]["tokenizer_dir"] = TOKENIZER_DIR
    (work / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    files = {DECODER_FILE: work / DECODER_FILE, CONFIG_FILE: work / CONFIG_FILE}
    for external in sorted(work.glob(DECODER_FILE + ".*")):  # weights saved as ONNX external data, if any
        files[external.name] = external
    return files
