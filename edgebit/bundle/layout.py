"""File names inside a bundle: the one place that defines them (every other module imports these).

```
manifest.json                      what the bundle holds (edgebit.bundle.manifest)
manifest.sig                       with export --sign: Ed25519 signature of manifest.json (edgebit.bundle.signing)
tokenizer.json                     when the model has one
tokenizer_config.json              with it: the checkpoint's, or a minimal one (ONNX Runtime GenAI reads both)
reference/input_ids.npy, logits.npy   host PyTorch's reference vectors
loader/                            the target's dynamic loader and C/C++ runtime (glibc, libstdc++, libgcc_s):
                                   every runner starts through it, so the device needs only a Linux kernel
runtimes/<runtime>/                one directory per runtime:
    <model file>                   model.so + weights.params, model.onnx, model.pte
    model.conf                     inputs and state shapes, for the runner
    bin/edgebit-runner             the device runner (same command line for every runtime)
    lib/                           the runtime's shared libraries for the target
```
"""

MANIFEST = "manifest.json"
MANIFEST_SIG = "manifest.sig"  # not listed in the manifest: it signs the manifest
TOKENIZER = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
REFERENCE_INPUTS = "reference/input_ids.npy"
REFERENCE_LOGITS = "reference/logits.npy"
RUNTIMES_DIR = "runtimes"
LOADER_DIR = "loader"
# Inside a runtime directory:
MODEL_CONF = "model.conf"
RUNNER_NAME = "edgebit-runner"
RUNNER = f"bin/{RUNNER_NAME}"
LIB_DIR = "lib"


def runtime_dir(runtime: str) -> str:
    """The directory of ``runtime`` inside a bundle."""
    return f"{RUNTIMES_DIR}/{runtime}"
