"""`ForgettingMonitorCallback`: a cheap forgetting check during training (drift KL from the original model on general
text, and a few few-shot probes), logged with the trainer's other metrics every `every_n_steps` steps."""

from __future__ import annotations

import logging

import torch
from transformers import TrainerCallback
from trl.models.utils import unwrap_model_for_generation

from ..backends import SamplingSettings
from ..backends.local import TransformersBackend
from ..data import read_jsonl
from .likelihood import drift_kl, eval_mode, padding_side
from .probes import bundled, probe_correct, probe_prompt, read_paragraphs

logger = logging.getLogger(__name__)


class ForgettingMonitorCallback(TrainerCallback):
    """Log `forgetting/drift_kl` and `forgetting/probe_accuracy` every `every_n_steps` optimizer steps.

    Args:
        trainer (`Trainer`): the trainer to monitor (its model, tokenizer and `log`).
        every_n_steps (`int`, defaults to `50`).
        reference_model (`PreTrainedModel`, *optional*): the original model for drift. Default: RAFTTrainer's frozen
            teacher, else the adapter-disabled base of a PEFT model; without either, drift is not logged.
        num_probes (`int`, defaults to `8`): how many bundled probes (or of `probes`) to ask.
        probes (`list[dict]`, *optional*): `{"question", "answer", "aliases"}` items; default: the bundled probes.
        texts (`list[str]`, *optional*): general text for drift; default: the bundled paragraphs.

    Example: `trainer.add_callback(ForgettingMonitorCallback(trainer, every_n_steps=100))`.
    """

    def __init__(
        self, trainer, every_n_steps: int = 50, reference_model=None, num_probes: int = 8, probes=None, texts=None
    ):
        self.trainer, self.every_n_steps = trainer, every_n_steps
        self.reference_model = reference_model if reference_model is not None else getattr(trainer, "teacher", None)
        self.probes = (probes or read_jsonl(bundled("general_probes.jsonl")))[:num_probes]
        self.texts = texts or read_paragraphs(bundled("general_text.txt"))

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every_n_steps:
            return
        metrics = self.measure()
        pending = getattr(self.trainer, "_metrics", None)  # TRL trainers: logged with this step's loss line
        if isinstance(pending, dict) and "train" in pending:
            for name, value in metrics.items():
                pending["train"][name].append(value)
        else:  # `Trainer.log` clears `should_log`, which would drop this step's loss line: keep it
            should_log = control.should_log
            self.trainer.log(metrics)
            control.should_log = should_log

    def measure(self) -> dict[str, float]:
        """Drift and probe accuracy now. Every rank must call it (sharded models run collectives)."""
        trainer = self.trainer
        model = trainer.accelerator.unwrap_model(trainer.model)
        tokenizer = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
        metrics = {}
        # The backend pads on the left; the trainer's tokenizer keeps its own side afterwards.
        with eval_mode(model), torch.no_grad(), padding_side(tokenizer):
            if self.reference_model is not None or hasattr(model, "disable_adapter"):
                metrics["forgetting/drift_kl"] = drift_kl(model, self.reference_model, tokenizer, self.texts)
            gather = getattr(trainer.args, "ds3_gather_for_generation", True)
            with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator, gather) as generator:
                replies = TransformersBackend(generator, tokenizer).generate(
                    [probe_prompt(p["question"]) for p in self.probes], SamplingSettings(12, stop=("\n",))
                )
            hits = [probe_correct(r.text, p["answer"], p.get("aliases")) for r, p in zip(replies, self.probes)]
            metrics["forgetting/probe_accuracy"] = sum(hits) / len(hits)
        return metrics
