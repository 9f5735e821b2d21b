"""edgebit: export and deploy 1-bit and 1.58-bit language models to edge devices."""

__version__ = "0.1.0"


def load(path, **options):
    """Load a checkpoint directory into a torch.nn.Module: ``forward(input_ids [B, T]) -> float32 logits [B, T, V]``.

    See :func:`edgebit.checkpoints.load_checkpoint` for the formats and options.
    """
    from edgebit.checkpoints import load_checkpoint

    return load_checkpoint(path, **options)
