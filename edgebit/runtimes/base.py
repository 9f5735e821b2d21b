"""The interface every runtime implements: what a bundle's ``runtimes/<name>/`` directory is made from.

A runtime's directory holds its model file, ``model.conf`` (bundle.layout.MODEL_CONF: the state shapes for the
runner), its device runner ``bin/edgebit-runner`` (bundle.layout.RUNNER) and the libraries in ``lib/``. Every
runner speaks the same protocol (edgebit/runtimes/runner_driver.h), so run, validate, generate and bench work the
same for all of them.
"""

from __future__ import annotations

import abc
from pathlib import Path

from edgebit.targets import Target

DRIVER_HEADER = Path(__file__).parent / "runner_driver.h"  # the command line and protocol every runner shares


class Runtime(abc.ABC):
    name: str  # the --runtime name and the bundle directory runtimes/<name>/
    model_file: str  # the model file inside the runtime directory

    @abc.abstractmethod
    def unsupported_reason(self, target: Target, family: str) -> str | None:
        """Why this runtime cannot serve ``family`` models on ``target`` (None when it can)."""

    @abc.abstractmethod
    def version(self) -> str:
        """The runtime's version, recorded in the manifest."""

    @abc.abstractmethod
    def build(self, model, target: Target, max_seq_len: int, work: Path) -> dict[str, Path]:
        """The runtime directory's files for ``model`` on ``target``: {path inside the directory: host file}.

        ``work`` is a scratch directory that lives until the files are copied into the bundle.
        """

    def operator_runner(self, op: str, target: Target):
        """``run(*args) -> tuple of numpy arrays``: edgebit operator ``op`` (a folder of ops/, e.g. ``ternary_matmul``)
        lowered as this runtime lowers it in a bundle and run in this process on the host ``target``, ``args`` being
        the operator's schema arguments (ops/<op>/SPEC.md) as numpy arrays and ints. The runtime x operator test
        (tests/runtimes/test_operators.py) checks every runtime's runner against ops/<op>/numpy_reference.py."""
        raise NotImplementedError(f"the {self.name} runtime has no operator_runner: it cannot run {op} on its own")


def operators() -> list[str]:
    """edgebit's operators: the folders of ops/ (installed as edgebit_ops) that hold a SPEC.md."""
    import edgebit_ops

    return sorted(p.name for p in Path(edgebit_ops.__file__).parent.iterdir() if (p / "SPEC.md").is_file())


def operator_module(op: str, *args):
    """(module, inputs): the edgebit layer that calls operator ``op`` with the schema arguments ``args`` (numpy
    arrays, ints), the way a model holds it: packed weights and their scales in the layer (constants of the
    exported program), the activations (for the scan, every tensor) as inputs. The layer sits under a wrapper
    module, so exporters that swap layers for stand-ins (the portable ONNX form) find it."""
    import importlib

    import numpy as np
    import torch

    from edgebit.errors import EdgebitError

    # A fresh C-ordered copy: numpy views (x[None]) and empty arrays carry zero strides, which ExecuTorch refuses.
    tensors = [torch.from_numpy(np.ascontiguousarray(a)).clone(memory_format=torch.contiguous_format)
               if isinstance(a, np.ndarray) else a for a in args]
    package = importlib.import_module(f"edgebit_ops.{op}")
    if not hasattr(package, "calling_layer"):
        raise EdgebitError(f"operator {op!r} names no calling_layer in ops/{op}/__init__.py")
    layer, inputs = package.calling_layer(*tensors)

    class OneOperator(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, *inputs):
            return self.layer(*inputs)

    return OneOperator().eval(), inputs
