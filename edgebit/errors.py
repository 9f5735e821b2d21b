"""User-facing errors: the CLI prints their message as one line and exits non-zero, without a traceback."""


class EdgebitError(Exception):
    """A problem with the user's input (a file, a flag, a checkpoint) that they can fix; the message says how."""


class CheckpointError(EdgebitError):
    """A checkpoint directory that cannot be loaded as it is."""
