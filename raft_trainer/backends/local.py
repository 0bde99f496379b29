"""Local transformers backend: batched `generate` with left padding, the tokenizer's chat template when it has one."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import StoppingCriteriaList

from ..stopping import StopOnText, mask_after_first_eos
from . import BackendOptions, Generation, Prompt, SamplingSettings, as_messages, as_plain_text, cut_at_stop

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` -> bf16 on a bf16-capable GPU, fp32 elsewhere (CPU bf16 generation is slower, not faster)."""
    if dtype == "auto":
        bf16_gpu = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16_gpu else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of auto, {', '.join(_DTYPES)}; got {dtype!r}.")
    return _DTYPES[dtype]


class TransformersBackend:
    """Generate with a local causal LM.

    Args:
        model (`str` or `PreTrainedModel`): a name or path for `from_pretrained`, or a loaded model.
        tokenizer (`PreTrainedTokenizerBase`, *optional*): needed with a loaded model; loaded from `model` otherwise.
        options (`BackendOptions`, *optional*): `dtype`, `batch_size`, `device`.

    Chat prompts go through the tokenizer's chat template (with the generation prompt). A tokenizer without one (a
    base model) gets the message contents joined by blank lines, so the prompt templates end with a cue such as
    "Answer:" that a base model continues.
    """

    def __init__(self, model, tokenizer=None, options: BackendOptions | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.options = options or BackendOptions()
        device = torch.device(self.options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if isinstance(model, str):
            self.name = model
            try:
                tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
                model = AutoModelForCausalLM.from_pretrained(model, dtype=resolve_dtype(self.options.dtype, device))
            except OSError as error:
                raise OSError(
                    f"Cannot load the model {model!r}: {error}\nGive a folder saved with `save_pretrained`, a hub name "
                    "reachable from here, or a served model as name@http://host:port/v1."
                ) from error
            model = model.to(device)
        else:
            self.name = getattr(model, "name_or_path", None) or type(model).__name__
            if tokenizer is None:
                raise ValueError("TransformersBackend needs `tokenizer=` when given a loaded model.")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = [self.tokenizer.eos_token_id, *_as_list(getattr(model.generation_config, "eos_token_id", None))]
        self.eos_token_ids = sorted({i for i in eos if i is not None})

    def render(self, prompt: Prompt) -> str:
        """The exact text the model sees."""
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(as_messages(prompt), tokenize=False, add_generation_prompt=True)
        return as_plain_text(prompt)

    @torch.no_grad()
    def generate(self, prompts: Sequence[Prompt], settings: SamplingSettings) -> list[Generation]:
        size = self.options.batch_size
        return [
            g
            for start in range(0, len(prompts), size)
            for g in self._generate(prompts[start : start + size], settings)
        ]

    def _generate(self, prompts: Sequence[Prompt], settings: SamplingSettings) -> list[Generation]:
        texts = [self.render(p) for p in prompts]
        # A chat template writes its own BOS; plain text gets the tokenizer's special tokens.
        batch = self.tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=not self.tokenizer.chat_template
        ).to(self.model.device)
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        sampling = {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p, "top_k": 0}
        output = self.model.generate(
            **batch,
            max_new_tokens=settings.max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.eos_token_ids,
            repetition_penalty=1.0,
            **(sampling if settings.temperature > 0 else {"do_sample": False}),
            stopping_criteria=StoppingCriteriaList(
                [StopOnText(self.tokenizer, settings.stop, batch["input_ids"].shape[1])]
            ),
        )
        completion_ids = output[:, batch["input_ids"].shape[1] :]
        keep = mask_after_first_eos(completion_ids, self.eos_token_ids).bool()
        keep &= completion_ids != self.tokenizer.pad_token_id  # a stop string ends a row with padding, not EOS
        generations = []
        for ids, row_keep in zip(completion_ids, keep):
            text = self.tokenizer.decode(ids[row_keep], skip_special_tokens=True)
            cut = cut_at_stop(text, settings.stop)
            ended = not row_keep.all() or cut != text or bool(set(ids[row_keep].tolist()) & set(self.eos_token_ids))
            generations.append(Generation(cut.strip(), int(row_keep.sum()), "stop" if ended else "length"))
        return generations


def _as_list(value) -> list:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]
