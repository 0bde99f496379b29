"""OpenAI-compatible HTTP backend (vLLM, TGI, `transformers serve`, hosted APIs), standard library only: bounded
concurrency, per-request timeouts, retries with exponential backoff, the API key read from an environment variable."""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
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
RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAICompatibleBackend:
    """Generate through `POST {base_url}/chat/completions` (or `/completions` with `options.api="completions"`).

    Args:
        base_url (`str`): e.g. `http://127.0.0.1:8000/v1`.
        model (`str`): the served model's name, sent as `"model"`.
        options (`BackendOptions`, *optional*): concurrency, timeout, retries, `api_key_env`, `api`.
    """

    def __init__(self, base_url: str, model: str, options: BackendOptions | None = None):
        self.options = options or BackendOptions()
        if self.options.api not in {"chat", "completions"}:
            raise ValueError(f"api must be 'chat' or 'completions', got {self.options.api!r}.")
        self.base_url, self.model = base_url.rstrip("/"), model
        self.name = f"{model}@{self.base_url}"
        self._api_key = os.environ.get(self.options.api_key_env)  # never logged nor written anywhere

    def __repr__(self) -> str:
        key = "set" if self._api_key else "unset"
        return f"OpenAICompatibleBackend({self.name!r}, api_key from ${self.options.api_key_env}: {key})"

    def generate(self, prompts: Sequence[Prompt], settings: SamplingSettings) -> list[Generation]:
        with ThreadPoolExecutor(max_workers=max(1, self.options.max_concurrency)) as pool:
            return list(pool.map(lambda p: self._complete(p, settings), prompts))

    def _payload(self, prompt: Prompt, settings: SamplingSettings) -> dict:
        payload = {
            "model": self.model, "max_tokens": settings.max_new_tokens, "temperature": settings.temperature,
            "top_p": settings.top_p, "stream": False,
        }  # fmt: skip
        if settings.stop:
            payload["stop"] = list(settings.stop)[:4]  # the OpenAI API takes at most four; the rest are cut locally
        if settings.seed is not None:
            payload["seed"] = settings.seed
        if self.options.api == "chat":
            payload["messages"] = as_messages(prompt)
        else:
            payload["prompt"] = as_plain_text(prompt)
        return payload

    def _complete(self, prompt: Prompt, settings: SamplingSettings) -> Generation:
        response = self._post(
            f"/{'chat/' if self.options.api == 'chat' else ''}completions", self._payload(prompt, settings)
        )
        try:
            choice = response["choices"][0]
            text = choice["message"]["content"] if self.options.api == "chat" else choice["text"]
        except (KeyError, IndexError, TypeError) as error:
            raise BackendError(f"{self.name}: unexpected response shape {str(response)[:300]!r}") from error
        tokens = (response.get("usage") or {}).get("completion_tokens") or 0
        return Generation(cut_at_stop(text or "", settings.stop).strip(), int(tokens), choice.get("finish_reason"))

    def _post(self, path: str, payload: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        data = json.dumps(payload).encode()
        last_error = "no attempt made"
        for attempt in range(self.options.max_retries + 1):
            if attempt:
                delay = self.options.retry_backoff * 2 ** (attempt - 1)
                logger.warning(
                    "%s: %s; retry %d/%d in %.1fs", self.name, last_error, attempt, self.options.max_retries, delay
                )
                time.sleep(delay)
            request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.options.timeout) as reply:
                    return json.loads(reply.read())
            except urllib.error.HTTPError as error:
                body = error.read()[:300].decode(errors="replace")
                last_error = f"HTTP {error.code}: {body}"
                if error.code not in RETRYABLE_STATUS:
                    raise BackendError(f"{self.name} refused the request ({last_error}).") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as error:
                last_error = f"{type(error).__name__}: {getattr(error, 'reason', error)}"
        raise BackendError(f"{self.name} failed {self.options.max_retries + 1} times; last error: {last_error}")
