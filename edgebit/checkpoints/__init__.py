"""Checkpoint loading: detect a directory's layout and build the matching edgebit model.

Layouts, in the order they are recognized:

========== ============================================= ======================================
name       recognized by                                 loader
========== ============================================= ======================================
edgebit    ``edgebit_format`` in config.json             edgebit_format.load_checkpoint_dir
hf-bitnet  ``model_type: bitnet``                        bitnet_hf.load_hf_bitnet
1bitllm    ``model_type: llama`` + ``inner_attn_ln``     bitnet_hf.load_1bitllm
hf-mamba2  ``model_type: mamba2``                        mamba.load_hf_mamba2
mamba-ssm  ``d_model`` + ``n_layer`` + ``ssm_cfg``       mamba.load_mamba_ssm (Bi-Mamba release too)
========== ============================================= ======================================

A new layout is one detector and one loader in :data:`LAYOUTS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import nn

from edgebit.checkpoints import bitnet_hf, edgebit_format, mamba
from edgebit.checkpoints.files import read_config, read_tensors, verify_pins
from edgebit.checkpoints.source import TensorSource
from edgebit.errors import CheckpointError


@dataclass(frozen=True)
class Layout:
    name: str
    description: str
    detect: Callable[[dict, TensorSource], bool]
    load: Callable[[dict, TensorSource], nn.Module]


LAYOUTS = [
    Layout("edgebit", "edgebit packed checkpoint", lambda c, s: edgebit_format.is_edgebit_checkpoint(c),
           edgebit_format.load_checkpoint_dir),
    Layout("hf-bitnet", "Hugging Face BitNet (packed or unpacked)", lambda c, s: bitnet_hf.is_hf_bitnet(c),
           bitnet_hf.load_hf_bitnet),
    Layout("1bitllm", "1bitLLM bitnet_b1_58 (LLaMA config with sub-norms)", bitnet_hf.is_1bitllm,
           bitnet_hf.load_1bitllm),
    Layout("hf-mamba2", "Hugging Face Mamba-2 (binarized at load)", lambda c, s: mamba.is_hf_mamba2(c),
           mamba.load_hf_mamba2),
    Layout("mamba-ssm", "mamba_ssm Mamba-2 / Bi-Mamba release", lambda c, s: mamba.is_mamba_ssm(c),
           mamba.load_mamba_ssm),
]


def detect_layout(config: dict, source: TensorSource) -> Layout:
    for layout in LAYOUTS:
        if layout.detect(config, source):
            return layout
    model_type = config.get("model_type", "<none>")
    known = ", ".join(layout.description for layout in LAYOUTS)
    hint = " (a plain LLaMA checkpoint has no BitNet sub-norms)" if model_type == "llama" else ""
    raise CheckpointError(f"{source.directory}: unknown architecture model_type={model_type!r}{hint}; "
                          f"edgebit reads: {known}")


def load_checkpoint(path: str | Path, allow_pickle: bool = False, sha256: dict[str, str] | None = None) -> nn.Module:
    """Load a local checkpoint directory (never downloads) into an edgebit model in eval mode.

    ``allow_pickle`` permits pickled ``pytorch_model.bin`` weights; ``sha256`` pins files by name.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a directory; pass a local checkpoint directory")
    config = read_config(directory)
    if sha256:
        verify_pins(directory, sha256)
    source = TensorSource(directory, read_tensors(directory, allow_pickle=allow_pickle))
    layout = detect_layout(config, source)
    model = layout.load(config, source)
    model.layout = layout.name
    return model.eval()
