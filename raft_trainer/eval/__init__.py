"""Evaluation of both sides of RAFT's trade-off: domain accuracy, and general-ability retention against the base."""

from .config import EvalConfig
from .monitor import ForgettingMonitorCallback
from .runner import evaluate

__all__ = ["EvalConfig", "ForgettingMonitorCallback", "evaluate"]
