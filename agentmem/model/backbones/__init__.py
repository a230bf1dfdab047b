"""Backbones: the architecture table and offline loading of the default backbone."""

from agentmem.model.backbones.loader import (
    DEFAULT_BACKBONE,
    backbone_id,
    cache_dir,
    load_backbone,
    resolve_backbone,
)
from agentmem.model.backbones.table import ARCHITECTURES, ArchitectureSpec, decoder_layers, spec_for

__all__ = ["ARCHITECTURES", "DEFAULT_BACKBONE", "ArchitectureSpec", "backbone_id", "cache_dir",
           "decoder_layers", "load_backbone", "resolve_backbone", "spec_for"]
