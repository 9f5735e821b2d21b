"""Model families: one module per family (BitNet b1.58 now, Bi-Mamba next)."""
