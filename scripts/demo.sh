#!/usr/bin/env bash
# The main job on the embedded demo model: inspect it, then generate with it on the host.
set -euo pipefail
cd "$(dirname "$0")/.."
edgebit=.venv/bin/edgebit
echo "== edgebit inspect demo"
$edgebit inspect demo
echo "== edgebit generate demo (host PyTorch, KV cache)"
$edgebit generate demo --prompt "The Python interpreter" --max-new-tokens 48
