"""Bi-Mamba: Mamba-2 whose in_proj and out_proj are FBI-Linear (1-bit signs with per-column alpha and beta). Model
(model.py), the exported step with explicit conv and SSM state (step.py), checkpoint layouts and binarization
(checkpoints.py) and what ``inspect`` reports (summary.py)."""

from edgebit.checkpoints.layout import Layout
from edgebit.models.bimamba import checkpoints, summary
from edgebit.models.bimamba.model import BiMambaConfig, BiMambaForCausalLM, FBILinear
from edgebit.models.bimamba.step import bimamba_step_graph
from edgebit.models.family import Family

FAMILY = Family(
    name=BiMambaForCausalLM.family,
    description="Bi-Mamba (Mamba-2 with 1-bit FBI-Linear projections)",
    model_class=BiMambaForCausalLM,
    config_class=BiMambaConfig,
    layouts=(
        Layout("hf-mamba2", "Hugging Face Mamba-2 (binarized at load)",
               lambda config, source: checkpoints.is_hf_mamba2(config), checkpoints.load_hf_mamba2),
        Layout("mamba-ssm", "mamba_ssm Mamba-2 / Bi-Mamba release",
               lambda config, source: checkpoints.is_mamba_ssm(config), checkpoints.load_mamba_ssm),
    ),
    save_tensors=checkpoints.save_tensors,
    load_edgebit=checkpoints.load_edgebit,
    step_graph=bimamba_step_graph,
    packed_layers={FBILinear: ("w_signs",)},
    summarize=summary.summarize,
    summary_rows=summary.summary_rows,
    encodings=("planar1",),  # 1 bit per weight, planar (ops/binary_matmul/SPEC.md),
    binarizes=True,
)
