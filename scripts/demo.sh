#!/usr/bin/env bash
# The main job on the embedded demo models: inspect the BitNet demo, generate on the host, export it for arm64 with
# every runtime (TVM, ONNX Runtime custom ops and portable, ExecuTorch), validate each on the emulated arm64 device
# (qemu-user) and generate a line of text there; then the same path for the Bi-Mamba demo through TVM.
set -euo pipefail
cd "$(dirname "$0")/.."
edgebit=.venv/bin/edgebit
model="${DEMO_MODEL:-demo}"
bundle="${DEMO_BUNDLE:-out/demo-arm64.bundle}"
mamba_bundle="${DEMO_MAMBA_BUNDLE:-out/bimamba-demo-arm64.bundle}"
prompt="The Python interpreter"
step() { printf '\n== %s\n' "$*"; }

step "edgebit inspect $model"
$edgebit inspect "$model"
step "edgebit generate $model (host PyTorch, KV cache)"
$edgebit generate "$model" --prompt "$prompt" --max-new-tokens 32 --temperature 0
step "edgebit export $model --target arm64 --runtime all"
$edgebit export "$model" --target arm64 --runtime all -o "$bundle"
step "edgebit validate $bundle --device qemu (emulated Cortex-A72, every runtime)"
$edgebit validate "$bundle" --device qemu
step "edgebit generate $bundle --device qemu"
$edgebit generate "$bundle" --device qemu --prompt "$prompt" --max-new-tokens 32

if [ -d edgebit/demo/bimamba-demo ]; then
  step "edgebit inspect bimamba-demo"
  $edgebit inspect bimamba-demo
  step "edgebit export bimamba-demo --target arm64"
  $edgebit export bimamba-demo --target arm64 -o "$mamba_bundle"
  step "edgebit validate $mamba_bundle --device qemu"
  $edgebit validate "$mamba_bundle" --device qemu
  step "edgebit generate $mamba_bundle --device qemu"
  $edgebit generate "$mamba_bundle" --device qemu --prompt "$prompt" --max-new-tokens 32
fi
