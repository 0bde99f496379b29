"""Scripted generation backends for refine tests: deterministic replies chosen by a function of the prompt."""

from __future__ import annotations

from raft_trainer.backends import BackendError, Generation, as_plain_text


class ScriptedBackend:
    """Replies `reply(prompt_text)` (a text, or a `Generation` to script the finish reason); fails with `BackendError`
    from call number `fail_from_call` on."""

    def __init__(self, name, reply, fail_from_call=None):
        self.name, self.reply, self.fail_from_call = name, reply, fail_from_call
        self.calls = []

    def generate(self, prompts, settings):
        self.calls.append(([as_plain_text(p) for p in prompts], settings))
        if self.fail_from_call is not None and len(self.calls) >= self.fail_from_call:
            raise BackendError(f"{self.name}: HTTP 503 five times")
        return [self._generation(self.reply(as_plain_text(p))) for p in prompts]

    @staticmethod
    def _generation(reply):
        """A reply function may return the text (an answer that ended at EOS) or a whole `Generation`."""
        return reply if isinstance(reply, Generation) else Generation(reply, num_tokens=3, finish_reason="stop")


def field_of(prompt: str, label: str) -> str:
    """The text after `label: ` on its line ("Reference answer", "Draft answer", "Candidate answer")."""
    return prompt.split(f"\n{label}: ", 1)[1].split("\n", 1)[0]
