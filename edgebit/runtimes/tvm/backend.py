"""The TVM runtime backend: torch.export -> Relax (custom ops become TensorIR kernels) -> tvm.compile -> a shared
library for the target, with the weights in a separate parameter file.

The exported function is the family's step graph (BitNet: :class:`edgebit.models.bitnet.step.AppendCacheStep`) with
a symbolic token count and cache length, so one compiled ``main`` serves prefill (T tokens) and decode (1 token with
the filled rows of the KV cache). Every weight is a Relax
function input (``keep_params_as_input``) and goes to ``weights.params``; TVM's importer would bake buffers into
the library as constants, so packed ternary weights are turned into (frozen) parameters first.
"""

from __future__ import annotations

import contextlib
import copy
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgebit.bundle.layout import MODEL_CONF, RUNNER
from edgebit.models import family_of
from edgebit.models.head import QuantizedTable
from edgebit.models.step_graph import StepGraph, step_graph
from edgebit.runtimes.base import Runtime
from edgebit.runtimes.tvm.extern_kernels import ExternKernels, compile_objects, runs_cpp_kernels
from edgebit.targets import Target

MODEL_FILE = "model.so"
WEIGHTS_FILE = "weights.params"


@contextlib.contextmanager
def _quiet_native_stderr():
    """Hold back what TVM's C++ side prints to stderr (e.g. a warning per embedding lookup), unless it fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _weights_as_parameters(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose packed weight buffers are frozen parameters (so TVM keeps them as inputs)."""
    packed_buffers = {**family_of(model).packed_layers, QuantizedTable: ("w_codes", "w_scale")}
    model = copy.deepcopy(model)
    for module in model.modules():
        if type(module) in packed_buffers and module.is_packed:
            for name in packed_buffers[type(module)]:
                tensor = getattr(module, name)
                delattr(module, name)
                module.register_parameter(name, torch.nn.Parameter(tensor, requires_grad=False))
    return model


def _converters(target: Target, extern: ExternKernels):
    """custom_convert_map: ``edgebit::ternary_linear`` becomes the target's ternary kernel and ``aten.linear`` (the
    output head) the streaming dense kernel, each through call_tir."""
    from tvm import relax

    from edgebit.runtimes.tvm.dense_kernel import dense_kernel
    from edgebit_ops.binary_matmul import tvm_kernel as binary_kernels
    from edgebit_ops.grouped_attention import tvm_kernel as attention_kernels
    from edgebit_ops.int8_matmul import tvm_kernel as int8_kernels
    from edgebit_ops.q4_matmul import tvm_kernel as q4_kernels
    from edgebit_ops.selective_scan.tvm_kernel import selective_scan_kernel
    from edgebit_ops.ternary_matmul import tvm_kernel as ternary_kernels
    from edgebit_ops.ternary_matmul.tvm_kernel import dot_isa, dot_product_kernel, ternary_linear_te

    isa = dot_isa(target.features)

    def convert_linear(node, importer):
        args = importer.retrieve_args(node)
        x, weight = args[0], args[1]
        if len(args) > 2 and args[2] is not None:
            raise NotImplementedError("linear with bias: BitNet models have none")
        builder = importer.block_builder
        leading = list(x.ty.shape)[:-1]
        out_features, in_features = (int(v) for v in weight.ty.shape)
        x2 = builder.emit(relax.op.reshape(x, [-1, in_features]))
        gv = builder.add_func(dense_kernel(out_features, in_features, f"dense_{out_features}x{in_features}"),
                              f"dense_{out_features}x{in_features}")
        y2 = builder.emit(relax.call_tir(gv, [x2, weight],
                                         relax.TensorType([x2.ty.shape[0], out_features], "float32")))
        return builder.emit(relax.op.reshape(y2, leading + [out_features]))

    def convert(node, importer):
        x, w_packed, w_scale, in_features = importer.retrieve_args(node)
        builder = importer.block_builder
        leading = list(x.ty.shape)[:-1]
        out_features, packed_columns = (int(v) for v in w_packed.ty.shape)
        x2 = builder.emit(relax.op.reshape(x, [-1, in_features]))
        name = f"ternary_linear_{out_features}x{in_features}"
        if isa is None:
            y2 = builder.emit_te(ternary_linear_te, x2, w_packed, w_scale, in_features, primfunc_name_hint=name)
        else:
            prefill_gemm = runs_cpp_kernels(target)  # kernel.h's register-blocked GEMM for M > 1
            if prefill_gemm:
                extern.use(ternary_kernels.EXTERN_SOURCE)
            kernel = dot_product_kernel(out_features, in_features, packed_columns, isa, f"{name}_{isa}", prefill_gemm,
                                        extern_decode=prefill_gemm and isa == "avx512vnni")
            gv = builder.add_func(kernel, f"{name}_{isa}")
            rows = x2.ty.shape[0]
            y2 = builder.emit(relax.call_tir(gv, [x2, w_packed, w_scale],
                                             relax.TensorType([rows, out_features], "float32")))
        return builder.emit(relax.op.reshape(y2, leading + [out_features]))

    def head_converter(op_name, extern_source, extern_kernel, te_kernel, codes_per_byte):
        """Converter of a quantized head operator (int8_linear, q4_linear): the C++ kernel where the target runs
        them, else the tensor-expression kernel."""

        def convert(node, importer):
            x, w_codes, w_scale, in_features, block = importer.retrieve_args(node)
            builder = importer.block_builder
            leading = list(x.ty.shape)[:-1]
            out_features, padded = int(w_codes.ty.shape[0]), int(w_codes.ty.shape[1]) * codes_per_byte
            x2 = builder.emit(relax.op.reshape(x, [-1, in_features]))
            name = f"{op_name}_{out_features}x{in_features}"
            if runs_cpp_kernels(target):
                extern.use(extern_source)
                gv = builder.add_func(extern_kernel(out_features, in_features, padded, block, name), name)
                y2 = builder.emit(relax.call_tir(gv, [x2, w_codes, w_scale],
                                                 relax.TensorType([x2.ty.shape[0], out_features], "float32")))
            else:
                y2 = builder.emit_te(te_kernel, x2, w_codes, w_scale, in_features, block, primfunc_name_hint=name)
            return builder.emit(relax.op.reshape(y2, leading + [out_features]))

        return convert

    convert_int8 = head_converter("int8_linear", int8_kernels.EXTERN_SOURCE, int8_kernels.int8_extern_kernel,
                                  int8_kernels.int8_linear_te, 1)
    convert_q4 = head_converter("q4_linear", q4_kernels.EXTERN_SOURCE, q4_kernels.q4_extern_kernel,
                                q4_kernels.q4_linear_te, 2)

    def convert_attention(node, importer):
        q, prefix_k, prefix_v, new_k, new_v, positions = importer.retrieve_args(node)
        builder = importer.block_builder
        _, heads, tokens, dim = q.ty.shape
        kv_heads = int(new_k.ty.shape[1])
        heads, dim, cache_dtype = int(heads), int(dim), str(prefix_k.ty.dtype)
        name = f"grouped_attention_h{heads}kv{kv_heads}d{dim}_{cache_dtype}"
        extern.use(attention_kernels.EXTERN_SOURCE)
        gv = builder.add_func(attention_kernels.grouped_attention_kernel(heads, kv_heads, dim, cache_dtype, name),
                              name)
        return builder.emit(relax.call_tir(gv, [q, prefix_k, prefix_v, new_k, new_v, positions],
                                           relax.TensorType([1, tokens, heads * dim], "float32")))

    def convert_binary(node, importer):
        x, w_signs, alpha, beta, in_features = importer.retrieve_args(node)
        builder = importer.block_builder
        leading = list(x.ty.shape)[:-1]
        out_features, packed_columns = (int(v) for v in w_signs.ty.shape)
        x2 = builder.emit(relax.op.reshape(x, [-1, in_features]))
        name = f"binary_linear_{out_features}x{in_features}"
        if runs_cpp_kernels(target):
            extern.use(binary_kernels.EXTERN_SOURCE)
            gv = builder.add_func(binary_kernels.binary_extern_kernel(out_features, in_features, packed_columns, name),
                                  name)
            y2 = builder.emit(relax.call_tir(gv, [x2, w_signs, alpha, beta],
                                             relax.TensorType([x2.ty.shape[0], out_features], "float32")))
        else:
            y2 = builder.emit_te(binary_kernels.binary_linear_te, x2, w_signs, alpha, beta, in_features,
                                 primfunc_name_hint=name)
        return builder.emit(relax.op.reshape(y2, leading + [out_features]))

    def convert_scan(node, importer):
        x, dt, A, B, C, D, state = importer.retrieve_args(node)
        builder = importer.block_builder
        _, heads, head_dim, size = (int(v) if not hasattr(v, "name") else v for v in state.ty.shape)
        groups = int(B.ty.shape[2])
        name = f"selective_scan_h{heads}p{head_dim}g{groups}n{size}"
        gv = builder.add_func(selective_scan_kernel(heads, head_dim, groups, size, name), name)
        return builder.emit(relax.call_tir(gv, [x, dt, A, B, C, D, state],
                                           [relax.TensorType(x.ty.shape, "float32"),
                                            relax.TensorType(state.ty.shape, "float32")]))

    return {"ternary_linear.default": convert, "linear.default": convert_linear,
            "binary_linear.default": convert_binary,
            "int8_linear.default": convert_int8, "q4_linear.default": convert_q4,
            "selective_scan.default": convert_scan,
            "grouped_attention.default": convert_attention}


@dataclass
class CompiledModel:
    library: Path
    weights: Path
    graph: StepGraph

    @property
    def takes_position(self) -> bool:
        return self.graph.takes_position

    def runner_conf(self) -> str:
        return self.graph.runner_conf()


def _to_relax(module: torch.nn.Module, example: tuple, target: Target, extern: ExternKernels, dynamic_shapes=None,
              keep_params_as_input: bool = False):
    """torch.export -> Relax with edgebit's operators mapped to the target's TensorIR kernels (_converters)."""
    from tvm.relax.frontend.torch import from_exported_program
    from edgebit_ops.grouped_attention import GroupedAttention

    for layer in module.modules():  # one kernel call where the C++ kernel exists, else the reference's plain ops
        if isinstance(layer, GroupedAttention):
            layer.as_operator = runs_cpp_kernels(target)
    with torch.no_grad():
        exported = torch.export.export(module, example, dynamic_shapes=dynamic_shapes)
    # Without decomposition the head stays one aten.linear node, which _converters maps to the dense kernel.
    return from_exported_program(exported, keep_params_as_input=keep_params_as_input, run_ep_decomposition=False,
                                 custom_convert_map=_converters(target, extern))


def _compile(relax_module, target: Target):
    import tvm

    from edgebit.runtimes.tvm.pipeline import build_pipeline

    with _quiet_native_stderr():
        return tvm.compile(relax_module, target=tvm.target.Target(target.tvm_target_json()),
                           relax_pipeline=build_pipeline())


def _export(executable, target: Target, extern: ExternKernels, library: Path) -> None:
    """The shared library for ``target``, with the C++ kernels the converters called linked in."""
    from tvm.support.cc import cross_compiler

    addons = [str(p) for p in compile_objects(extern, target)]
    if target.is_host:
        executable.export_library(str(library), addons=addons)
    else:
        executable.export_library(str(library), fcompile=cross_compiler(target.cxx), addons=addons)


def compile_model(model, target: Target, max_seq_len: int, out_dir: Path) -> CompiledModel:
    """Lower ``model`` for ``target`` into ``out_dir/model.so`` + ``out_dir/weights.params``."""
    import tvm
    from tvm import relax

    graph = step_graph(_weights_as_parameters(model), max_seq_len)
    extern = ExternKernels()
    module = _to_relax(graph.module, graph.example, target, extern, graph.dynamic_shapes, keep_params_as_input=True)
    module, params = relax.frontend.detach_params(module)
    names = [p.name for p in module["main"].params][module["main"].attrs["num_input"]:]
    library = out_dir / MODEL_FILE
    _export(_compile(module, target), target, extern, library)
    weights = out_dir / WEIGHTS_FILE
    # Zero-padded indices make the names sort into argument order (the device runner relies on it).
    tvm.runtime.save_param_dict_to_file(
        {f"{i:04d}:{name}": tensor for i, (name, tensor) in enumerate(zip(names, params["main"]))}, str(weights))
    return CompiledModel(library, weights, graph)


class TvmRuntime(Runtime):
    """Apache TVM: the step compiled to a shared library for the target, weights in a parameter file."""

    name = "tvm"
    model_file = MODEL_FILE

    def unsupported_reason(self, target: Target, family: str) -> str | None:
        return None  # every target and family

    def version(self) -> str:
        import importlib.metadata

        return importlib.metadata.version("apache-tvm")

    def build(self, model, target: Target, max_seq_len: int, work: Path) -> dict[str, Path]:
        """model.so, weights.params, model.conf, the C++ runner and the target's TVM runtime libraries."""
        from edgebit.runtimes.tvm.runner_build import build_runner
        from edgebit.runtimes.tvm.runtime_libs import runtime_libraries

        compiled = compile_model(model, target, max_seq_len, work)
        conf = work / MODEL_CONF
        conf.write_text(compiled.runner_conf())
        files = {MODEL_FILE: compiled.library, WEIGHTS_FILE: compiled.weights, MODEL_CONF: conf,
                 RUNNER: build_runner(target)}
        files.update({f"lib/{library.name}": library for library in runtime_libraries(target)})
        return files

    def operator_runner(self, op: str, target: Target):
        """The layer calling ``op`` through torch.export -> Relax with the bundle's converters (the target's TensorIR
        kernel) -> tvm.compile, run by the Relax VM in this process (host targets only)."""
        import tvm
        from tvm import relax

        from edgebit.runtimes.base import operator_module

        if not target.is_host:
            raise ValueError(f"operator runners run in this process: {target.name} is not the host")

        def run(*args):
            module, inputs = operator_module(op, *args)
            extern = ExternKernels()
            executable = _compile(_to_relax(module, inputs, target, extern), target)
            with tempfile.TemporaryDirectory() as work:
                library = Path(work) / MODEL_FILE
                _export(executable, target, extern, library)
                outputs = relax.VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())["main"](
                    *(tvm.runtime.tensor(t.numpy()) for t in inputs))
            return tuple(o.numpy() for o in outputs) if isinstance(outputs, (list, tuple, tvm.ir.Array)) \
                else (outputs.numpy(),)

        return run


RISCV_OP_V = 0x57  # major opcode of RVV arithmetic and vsetvl* instructions

INSTRUCTION_PATTERNS = {
    "neon": r"\bv\d+\.(?:16b|8b|8h|4h|4s|2s|2d)\b",
    "dotprod": r"\b[su]dot\b",
    "avx2": r"\bv\w+\s+.*%ymm",
    "avx512vnni": r"\bvpdpbusd\b",
}


def instruction_counts(library: Path, target: Target) -> dict[str, int]:
    """Counts of the target's signature vector instructions in a compiled library (from objdump -d).

    binutils 2.40 does not decode RVV 1.0 and prints such words as ``.4byte``; they are counted by opcode.
    """
    import re

    text = subprocess.run([f"{target.cross_prefix}objdump", "-d", str(library)], capture_output=True, text=True,
                          check=True).stdout
    counts = {name: len(re.findall(pattern, text)) for name, pattern in INSTRUCTION_PATTERNS.items()
              if name in target.features}
    if "rvv" in target.features:
        words = [int(w, 16) for w in re.findall(r"\.4byte\s+0x([0-9a-f]+)", text)]
        named = len(re.findall(r"\tv(?:setvli|setivli|setvl)\b", text))
        counts["rvv"] = named + sum(1 for w in words if w & 0x7F == RISCV_OP_V)
    return counts


def load_for_host(library: Path, weights: Path, takes_position: bool):
    """Load a host-built library in-process (tests, benchmarks): returns ``step(ids, position, *states,
    last_only=False)``, which returns every token's logits or (``last_only``) the last token's."""
    import tvm
    from tvm import relax

    from edgebit.models.step_graph import logit_rows

    vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())
    loaded = tvm.runtime.load_param_dict_from_file(str(weights))
    weights = [loaded[name] for name in sorted(loaded.keys())]

    def step(ids: np.ndarray, position: int, *states, last_only: bool = False):
        inputs = [tvm.runtime.tensor(ids)]
        if takes_position:
            inputs.append(tvm.runtime.tensor(np.array([position], dtype=np.int64)))
        inputs.append(tvm.runtime.tensor(logit_rows(ids.shape[1], last_only).numpy()))
        return tuple(vm["main"](*inputs, *states, *weights))

    return step
