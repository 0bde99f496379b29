"""raft_trainer: RAFT (arXiv 2606.00147) as a drop-in extension of TRL's SFTTrainer."""

from .balancing import EMALossBalancer
from .callbacks import RAFTCallback
from .collator import RAFTDataCollator
from .config import RAFTConfig
from .trainer import RAFTTrainer

__version__ = "0.1.0"
__all__ = ["EMALossBalancer", "RAFTCallback", "RAFTConfig", "RAFTDataCollator", "RAFTTrainer", "__version__"]
