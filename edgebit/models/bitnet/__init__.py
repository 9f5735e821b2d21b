"""BitNet b1.58: a LLaMA-like transformer with ternary projections (ReLU^2 or SwiGLU FFN, attention and FFN
sub-norms). Model (model.py), the exported step with a fixed-size KV cache (step.py), the step as an ONNX Runtime
GenAI decoder with a growing cache (genai_step.py), checkpoint layouts (checkpoints.py) and what ``inspect`` reports
(summary.py)."""

from edgebit.checkpoints.layout import Layout
from edgebit.models.bitnet import checkpoints, summary
from edgebit.models.bitnet.model import BitNetConfig, BitNetForCausalLM, TernaryLinear
from edgebit.models.bitnet.genai_step import bitnet_genai_decoder
from edgebit.models.bitnet.step import bitnet_llm_step_graph, bitnet_step_graph
from edgebit.models.family import Family

FAMILY = Family(
    name=BitNetForCausalLM.family,
    description="BitNet b1.58 (ternary weights, int8 activations)",
    model_class=BitNetForCausalLM,
    config_class=BitNetConfig,
    layouts=(
        Layout("hf-bitnet", "Hugging Face BitNet (packed or unpacked)",
               lambda config, source: checkpoints.is_hf_bitnet(config), checkpoints.load_hf_bitnet),
        Layout("1bitllm", "1bitLLM bitnet_b1_58 (LLaMA config with sub-norms)", checkpoints.is_1bitllm,
               checkpoints.load_1bitllm),
    ),
    save_tensors=checkpoints.save_tensors,
    load_edgebit=checkpoints.load_edgebit,
    step_graph=bitnet_step_graph,
    packed_layers={TernaryLinear: ("w_packed", "w_scale")},
    summarize=summary.summarize,
    summary_rows=summary.summary_rows,
    encodings=checkpoints.ENCODINGS,
    genai_decoder=bitnet_genai_decoder,
    llm_step_graph=bitnet_llm_step_graph,
)
