"""raft_trainer: RAFT (arXiv 2606.00147) as a drop-in extension of TRL's SFTTrainer.

The public classes are imported lazily, so `import raft_trainer.losses` stays free of transformers and trl.
"""

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "ConfigError": "errors",
    "DataError": "errors",
    "MissingPackageError": "errors",
    "EMALossBalancer": "balancing",
    "RAFTLossBalancer": "balancing",
    "RAFTConfig": "config",
    "RAFTDataCollator": "collator",
    "RAFTTrainer": "trainer",
}
__all__ = [
    "ConfigError",
    "DataError",
    "MissingPackageError",
    "EMALossBalancer",
    "RAFTConfig",
    "RAFTDataCollator",
    "RAFTLossBalancer",
    "RAFTTrainer",
    "__version__",
]

if TYPE_CHECKING:
    from .balancing import EMALossBalancer, RAFTLossBalancer
    from .collator import RAFTDataCollator
    from .config import RAFTConfig
    from .errors import ConfigError, DataError, MissingPackageError
    from .trainer import RAFTTrainer


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
