#!/usr/bin/env bash
# The main job on the embedded demo model: inspect it, generate on the host, export it for arm64 through TVM,
# validate it on the emulated arm64 device (qemu-user) and generate a line of text there.
set -euo pipefail
cd "$(dirname "$0")/.."
edgebit=.venv/bin/edgebit
model="${DEMO_MODEL:-demo}"
bundle="${DEMO_BUNDLE:-out/demo-arm64.bundle}"
prompt="The Python interpreter"
step() { printf '\n== %s\n' "$*"; }

step "edgebit inspect $model"
$edgebit inspect "$model"
step "edgebit generate $model (host PyTorch, KV cache)"
$edgebit generate "$model" --prompt "$prompt" --max-new-tokens 32 --temperature 0
step "edgebit export $model --target arm64"
$edgebit export "$model" --target arm64 -o "$bundle"
step "edgebit validate $bundle --device qemu (emulated Cortex-A72)"
$edgebit validate "$bundle" --device qemu
step "edgebit generate $bundle --device qemu"
$edgebit generate "$bundle" --device qemu --prompt "$prompt" --max-new-tokens 32
