"""Text generation shared by `raft refine` and `raft eval`: one `generate(prompts, settings)` call over a local
transformers model, any OpenAI-compatible HTTP endpoint, or vLLM's offline engine.

A backend is named by a spec string (`load_backend`):

- `path/or/hub-name`                   local transformers model (batched `generate`, left padding, chat template)
- `model-name@http://host:port/v1`     OpenAI-compatible server (vLLM, TGI, `transformers serve`, hosted APIs)
- `vllm:path/or/hub-name`              vLLM offline engine (needs `pip install vllm`)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..options import option
from ..stopping import decode_escapes

Message = dict[str, str]
Prompt = str | list[Message]  # plain text, or chat messages [{"role": ..., "content": ...}]


class BackendError(RuntimeError):
    """A backend failed for good (after its retries); work already written is kept."""


@dataclass(frozen=True)
class SamplingSettings:
    """How to sample one call's completions.

    Args:
        max_new_tokens (`int`, *optional*, defaults to `256`): length cap per completion.
        temperature (`float`, *optional*, defaults to `0.0`): `0` means greedy decoding.
        top_p (`float`, *optional*, defaults to `1.0`): nucleus sampling mass.
        stop (`tuple[str, ...]`, *optional*, defaults to `()`): the text is cut before the first of these strings.
        seed (`int`, *optional*): seeds sampling (local and vLLM backends; sent to HTTP servers, which may ignore it).
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class Generation:
    """One completion: its text (cut at the first stop string), the number of generated tokens, why it ended.

    `finish_reason` is the OpenAI API's: `"stop"` (EOS or a stop string), `"length"` (cut at `max_new_tokens`), or
    `None` when the server does not say. `text` is the reply as generated, reasoning blocks included; what is scored
    or stored as an answer goes through `strip_reasoning`.
    """

    text: str
    num_tokens: int = 0
    finish_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def truncated(self) -> bool:
        """The reply was cut at the token limit (`finish_reason == "length"`): a half answer."""
        return self.finish_reason == "length"


class GenerationBackend(Protocol):
    """What refine and eval need from a model: a name for provenance and batched generation."""

    name: str

    def generate(self, prompts: Sequence[Prompt], settings: SamplingSettings) -> list[Generation]: ...


def is_chat(prompt: Any) -> bool:
    return isinstance(prompt, list) and all(isinstance(m, dict) and "role" in m for m in prompt)


def as_messages(prompt: Prompt) -> list[Message]:
    """Chat messages for a prompt; plain text becomes one user message."""
    return list(prompt) if is_chat(prompt) else [{"role": "user", "content": prompt}]


def as_plain_text(prompt: Prompt) -> str:
    """Plain text for a prompt, for models without a chat template: message contents joined by blank lines."""
    return "\n\n".join(m["content"] for m in prompt) if is_chat(prompt) else prompt


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """The text before the earliest stop string.

    ```python
    >>> cut_at_stop("Paris.\\nQuestion: next", ["\\nQuestion:", "\\n\\n"])
    'Paris.'

    ```
    """
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return text[: min(cuts)] if cuts else text


REASONING_TAGS = ("think", "thinking", "reasoning")
_REASONING_BLOCK = re.compile(rf"<({'|'.join(REASONING_TAGS)})>.*?(?:</\1>|$)", re.IGNORECASE | re.DOTALL)
_REASONING_END = re.compile(rf"</(?:{'|'.join(REASONING_TAGS)})>", re.IGNORECASE)


def strip_reasoning(text: str) -> str:
    """The answer part of a reply: reasoning blocks removed, surrounding whitespace stripped.

    One rule for every reply that is scored or stored (judge scores and verdicts, rewrites, fused answers, `raft eval`'s
    domain answers and probes):
    1. each `<think>…</think>` block is removed (also `<thinking>`, `<reasoning>`; tags in any case); one left
       unclosed runs to the end of the text (a trace cut by the token limit holds no answer);
    2. then, if a closing tag is left without its opening one (chat templates such as Qwen3's or DeepSeek-R1's write
       `<think>` into the prompt), everything up to the last one is removed, as lm-eval's `think_end_token` does.

    ```python
    >>> strip_reasoning("<think>Lyon? No.</think>\\n\\nParis"), strip_reasoning("Lyon? No.\\n</think>\\nParis")
    ('Paris', 'Paris')
    >>> strip_reasoning("<thinking>cut at max_tokens"), strip_reasoning("Paris, not <Lyon>.")
    ('', 'Paris, not <Lyon>.')

    ```
    """
    text = _REASONING_BLOCK.sub(" ", text)
    ends = list(_REASONING_END.finditer(text))
    return (text[ends[-1].end() :] if ends else text).strip()


@dataclass(frozen=True)
class BackendOptions:
    """Settings for the backends `load_backend` builds (one set per run).

    Args:
        dtype (`str`, defaults to `"auto"`): local models: `auto` (bf16 on a bf16-capable GPU, else fp32), `bfloat16`,
            `float16` or `float32`.
        batch_size (`int`, defaults to `8`): local models: prompts per `generate` call.
        device (`str`, *optional*): local models: `cuda`, `cpu`, ... (default: the first GPU if any).
        api_key_env (`str`, defaults to `"OPENAI_API_KEY"`): HTTP: environment variable holding the API key (the key
            is read from there only and never logged).
        max_concurrency (`int`, defaults to `8`): HTTP: requests in flight at once.
        timeout (`float`, defaults to `120`): HTTP: seconds per request.
        max_retries (`int`, defaults to `4`): HTTP: retries of a failed request — connection errors, timeouts, a cut
            reply, 408/409/429/5xx (by the `openai` client, exponential backoff with jitter, `Retry-After` honoured)
            and a 200 without a usable completion (`backends.http`: the classification).
        retry_backoff (`float`, defaults to `1.0`): HTTP: first backoff in seconds (doubled each retry) after a 200
            without a usable completion.
        api (`str`, defaults to `"chat"`): HTTP: `chat` (`/chat/completions`) or `completions` (`/completions`, plain
            text prompts, for base models served without a chat template).
    """

    dtype: str = "auto"
    batch_size: int = 8
    device: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 8
    timeout: float = 120.0
    max_retries: int = 4
    retry_backoff: float = 1.0
    api: str = "chat"


@dataclass
class BackendArguments:
    """The backend settings as command-line/YAML fields, shared by `RefineConfig` and `EvalConfig`."""

    dtype: str = option("Local models: auto, bfloat16, float16 or float32.", default="auto")
    generation_batch_size: int = option("Local models: prompts per generate call.", default=8)
    device: str | None = option("Local models: device (default: first GPU, else CPU).", default=None)
    api_key_env: str = option("HTTP backends: environment variable that holds the API key.", default="OPENAI_API_KEY")
    max_concurrency: int = option("HTTP backends: requests in flight.", default=8)
    request_timeout: float = option("HTTP backends: seconds per request.", default=120.0)
    max_retries: int = option("HTTP backends: retries per request (exponential backoff).", default=4)
    api: str = option("HTTP backends: 'chat' or 'completions'.", default="chat")

    def backend_options(self) -> BackendOptions:
        return BackendOptions(
            dtype=self.dtype,
            batch_size=self.generation_batch_size,
            device=self.device,
            api_key_env=self.api_key_env,
            max_concurrency=self.max_concurrency,
            timeout=self.request_timeout,
            max_retries=self.max_retries,
            api=self.api,
        )


def load_backend(spec: str, options: BackendOptions | None = None) -> GenerationBackend:
    """Build the backend a spec string names (see the module docstring)."""
    options = options or BackendOptions()
    model, sep, url = spec.rpartition("@")
    if sep and url.startswith(("http://", "https://")):
        from .http import OpenAICompatibleBackend

        return OpenAICompatibleBackend(url, model, options)
    if spec.startswith("vllm:"):
        from .vllm import VLLMBackend

        return VLLMBackend(spec.removeprefix("vllm:"), options)
    from .local import TransformersBackend

    return TransformersBackend(spec, options=options)


class BackendPool:
    """One backend per spec, built on first use, so a model that rewrites, fuses and judges is loaded once."""

    def __init__(self, options: BackendOptions | None = None, **prebuilt: GenerationBackend):
        self.options = options or BackendOptions()
        self._backends: dict[str, GenerationBackend] = dict(prebuilt)

    def built(self, spec: str) -> GenerationBackend | None:
        """The backend for `spec` if it is already built (or was passed prebuilt), else `None`."""
        return self._backends.get(spec)

    def get(self, spec: str) -> GenerationBackend:
        if spec not in self._backends:
            self._backends[spec] = load_backend(spec, self.options)
        return self._backends[spec]


__all__ = [
    "BackendArguments",
    "BackendError",
    "BackendOptions",
    "BackendPool",
    "Generation",
    "GenerationBackend",
    "Prompt",
    "SamplingSettings",
    "as_messages",
    "as_plain_text",
    "cut_at_stop",
    "decode_escapes",
    "is_chat",
    "load_backend",
    "strip_reasoning",
]
