"""Stage 1 of RAFT, data refinement: self-conditioned rewriting, semantic filtering, answer fusion with judges."""

from .config import RefineConfig
from .pipeline import refine

__all__ = ["RefineConfig", "refine"]
