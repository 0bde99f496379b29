"""`raft lab`: the paper's comparison (base, SFT, refined SFT, on-policy distillation, RAFT with fixed and EMA λ, TRL's
SDFT) end to end on one model and one domain, over several seeds, evaluated with `raft eval`'s metrics."""

from .config import LabConfig
from .runner import run_lab

__all__ = ["LabConfig", "run_lab"]
