"""Classifier checkpoints in every common form, and vcal's own format (`vcal_cli.checkpoints.loader`)."""

from vcal_cli.checkpoints.arch import build_arch
from vcal_cli.checkpoints.head_finder import find_head
from vcal_cli.checkpoints.loader import LoadedModel, apply_head_file, load_checkpoint, save_checkpoint, save_head
from vcal_cli.errors import CheckpointError

__all__ = [
    "CheckpointError",
    "LoadedModel",
    "apply_head_file",
    "build_arch",
    "find_head",
    "load_checkpoint",
    "save_checkpoint",
    "save_head",
]
