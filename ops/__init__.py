"""edgebit's custom operators, one sub-package per operator (installed as ``edgebit_ops``).

Each operator folder holds SPEC.md (the contract), the PyTorch reference registered with torch.library, and, as
they land, its TVM kernels and runtime kernels.
"""
