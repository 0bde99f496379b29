"""vLLM offline-engine backend (`vllm:name_or_path`), used when vLLM is installed (a GPU machine)."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import MissingPackageError
from . import BackendOptions, Generation, Prompt, SamplingSettings, as_plain_text, cut_at_stop, is_chat


class VLLMBackend:
    """Generate with `vllm.LLM`: chat prompts through `LLM.chat` (the model's chat template), text through
    `LLM.generate`. `options.dtype` is passed to the engine."""

    def __init__(self, model: str, options: BackendOptions | None = None):
        try:
            from vllm import LLM
        except ImportError as error:
            raise MissingPackageError(
                f"The backend 'vllm:{model}' needs vLLM (`pip install vllm`, GPU machines). Use the local transformers "
                f"backend ('{model}') or an OpenAI-compatible server ('name@http://host:port/v1') instead."
            ) from error
        self.options = options or BackendOptions()
        self.name = f"vllm:{model}"
        self.llm = LLM(model=model, dtype=self.options.dtype)

    def generate(self, prompts: Sequence[Prompt], settings: SamplingSettings) -> list[Generation]:
        from vllm import SamplingParams

        params = SamplingParams(
            max_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            stop=list(settings.stop) or None,
            seed=settings.seed,
        )
        chat = [i for i, p in enumerate(prompts) if is_chat(p)]
        text = [i for i, p in enumerate(prompts) if not is_chat(p)]
        outputs = {}
        if chat:
            outputs.update(zip(chat, self.llm.chat([prompts[i] for i in chat], params, use_tqdm=False)))
        if text:
            outputs.update(
                zip(text, self.llm.generate([as_plain_text(prompts[i]) for i in text], params, use_tqdm=False))
            )
        results = []
        for i in range(len(prompts)):
            out = outputs[i].outputs[0]
            results.append(
                Generation(cut_at_stop(out.text, settings.stop).strip(), len(out.token_ids), out.finish_reason)
            )
        return results
