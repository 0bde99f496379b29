"""OpenAI-compatible HTTP backend (vLLM, TGI, `transformers serve`, hosted APIs) on the `openai` client: bounded
concurrency, per-request timeouts, retries with backoff, the API key read from an environment variable.

Failures are classified in one place (`_attempt`), applied to every request:
- **retried** by the `openai` client (exponential backoff with jitter, `Retry-After` honoured): connection errors,
  timeouts, a connection cut mid-reply (truncated body, a bad status line), HTTP 408, 409, 429 and 5xx;
- **retried** here, with backoff from `retry_backoff` seconds: an HTTP 200 whose body cannot be used — not UTF-8,
  not JSON, an in-band `{"error": …}` object, no `choices`, a non-string `content`;
- **fatal at once**: any other 4xx (authentication, a wrong model name or URL, a bad request);
- after `max_retries` retries the request fails with `BackendError` naming the last error; `raft refine` adds that
  finished rows are saved and that the same command resumes.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from . import (
    BackendError,
    BackendOptions,
    Generation,
    Prompt,
    SamplingSettings,
    as_messages,
    as_plain_text,
    cut_at_stop,
)

logger = logging.getLogger(__name__)
RETRYABLE_STATUS = {408, 409, 429} | set(range(500, 600))  # what the `openai` client retries


class UnusableReply(Exception):
    """An HTTP 200 whose body holds no completion (retried, then reported)."""


class OpenAICompatibleBackend:
    """Generate through `POST {base_url}/chat/completions` (or `/completions` with `options.api="completions"`).

    Args:
        base_url (`str`): e.g. `http://127.0.0.1:8000/v1`.
        model (`str`): the served model's name, sent as `"model"`.
        options (`BackendOptions`, *optional*): concurrency, timeout, retries, `api_key_env`, `api`.

    Raises:
        `BackendError` from `generate` when a request fails for good (module docstring: which failures are retried).
    """

    def __init__(self, base_url: str, model: str, options: BackendOptions | None = None):
        import openai

        self.options = options or BackendOptions()
        if self.options.api not in {"chat", "completions"}:
            raise ValueError(f"api must be 'chat' or 'completions', got {self.options.api!r}.")
        self.base_url, self.model = base_url.rstrip("/"), model
        self.name = f"{model}@{self.base_url}"
        api_key = os.environ.get(self.options.api_key_env)  # never logged nor written anywhere
        self._has_key = bool(api_key)
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key or "EMPTY",
            timeout=self.options.timeout,
            max_retries=self.options.max_retries,
        )

    def __repr__(self) -> str:
        key = "set" if self._has_key else "unset"
        return f"OpenAICompatibleBackend({self.name!r}, api_key from ${self.options.api_key_env}: {key})"

    def generate(self, prompts: Sequence[Prompt], settings: SamplingSettings) -> list[Generation]:
        with ThreadPoolExecutor(max_workers=max(1, self.options.max_concurrency)) as pool:
            return list(pool.map(lambda p: self._complete(p, settings), prompts))

    def _arguments(self, prompt: Prompt, settings: SamplingSettings) -> dict:
        arguments = {
            "model": self.model,
            "max_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
        }
        if settings.stop:
            arguments["stop"] = list(settings.stop)[:4]  # the OpenAI API takes at most four; the rest are cut locally
        if settings.seed is not None:
            arguments["seed"] = settings.seed
        if self.options.api == "chat":
            arguments["messages"] = as_messages(prompt)
        else:
            arguments["prompt"] = as_plain_text(prompt)
        return arguments

    def _complete(self, prompt: Prompt, settings: SamplingSettings) -> Generation:
        arguments, last = self._arguments(prompt, settings), "no attempt made"
        for attempt in range(self.options.max_retries + 1):
            if attempt:
                delay = self.options.retry_backoff * 2 ** (attempt - 1)
                logger.warning(
                    "%s: %s; retry %d/%d in %.1fs", self.name, last, attempt, self.options.max_retries, delay
                )
                time.sleep(delay)
            try:
                text, tokens, finish_reason = self._attempt(arguments)
            except UnusableReply as problem:
                last = str(problem)
                continue
            return Generation(cut_at_stop(text, settings.stop).strip(), tokens, finish_reason)
        raise BackendError(f"{self.name} failed {self.options.max_retries + 1} times; last error: {last}")

    def _attempt(self, arguments: dict) -> tuple[str, int, str | None]:
        """One request (with the client's own retries): the reply's text, completion tokens and finish reason.

        Raises `UnusableReply` (retry) for a 200 without a usable completion, `BackendError` (fatal) otherwise."""
        import openai

        endpoint = self._client.chat.completions if self.options.api == "chat" else self._client.completions
        try:
            raw = endpoint.with_raw_response.create(**arguments)
        except openai.APIStatusError as error:
            body = error.response.text[:300]
            if error.status_code in RETRYABLE_STATUS:
                raise BackendError(
                    f"{self.name} failed {self.options.max_retries + 1} times; last error: HTTP "
                    f"{error.status_code}: {body}"
                ) from None
            raise BackendError(f"{self.name} refused the request (HTTP {error.status_code}: {body}).") from None
        except openai.APIError as error:  # connection refused or cut, timeout: the client retried already
            cause = error.__cause__ or error
            raise BackendError(
                f"{self.name} failed {self.options.max_retries + 1} times; last error: "
                f"{type(error).__name__} ({type(cause).__name__}: {cause})"
            ) from None
        return read_completion(raw.http_response.content, self.options.api)


def read_completion(body: bytes, api: str = "chat") -> tuple[str, int, str | None]:
    """Text, completion tokens and finish reason from an OpenAI-style completion body.

    Raises `UnusableReply` naming what is wrong: not UTF-8, not JSON, an in-band error object, no choices, a
    non-string content. A missing or malformed `usage` counts 0 tokens (it is bookkeeping, not the answer).
    """
    try:
        reply = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise UnusableReply(f"the reply is not UTF-8 ({error.reason} at byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise UnusableReply(f"the reply is not JSON ({error.msg}): {body[:120]!r}") from None
    if not isinstance(reply, dict):
        raise UnusableReply(f"the reply is not a JSON object: {str(reply)[:120]!r}")
    if reply.get("error"):
        raise UnusableReply(f"the server answered with an error object: {str(reply['error'])[:200]!r}")
    choices = reply.get("choices")
    if not (isinstance(choices, list) and choices and isinstance(choices[0], dict)):
        raise UnusableReply(f"the reply has no choices: {str(reply)[:200]!r}")
    choice = choices[0]
    if api == "chat":
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if isinstance(text, list):  # content parts: [{"type": "text", "text": ...}, ...]
            parts = [p.get("text") for p in text if isinstance(p, dict) and p.get("type") == "text"]
            text = "".join(p for p in parts if isinstance(p, str)) if parts else None
    else:
        text = choice.get("text")
    if text is None and choice.get("finish_reason") in {"length", "stop"}:
        text = ""  # an empty answer is an answer
    if not isinstance(text, str):
        raise UnusableReply(f"the reply's content is not text: {str(choice)[:200]!r}")
    usage = reply.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    finish_reason = choice.get("finish_reason")
    return (
        text,
        tokens if isinstance(tokens, int) and tokens >= 0 else 0,
        (finish_reason if isinstance(finish_reason, str) else None),
    )
