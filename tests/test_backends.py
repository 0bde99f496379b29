"""Generation backends: local transformers (batching, stop strings), OpenAI-compatible HTTP (retries, key handling,
a real `transformers serve`), vLLM's import error, and spec parsing."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from raft_trainer.backends import BackendError, BackendOptions, SamplingSettings, load_backend
from raft_trainer.backends.http import OpenAICompatibleBackend
from raft_trainer.backends.local import TransformersBackend

PROMPTS = ["What is the capital of France ?", [{"role": "user", "content": "What is two plus two ?"}], "Plants absorb"]


@pytest.fixture(scope="module")
def local_backend(tiny_model_dir):
    return TransformersBackend(tiny_model_dir, options=BackendOptions(batch_size=3))


def test_batched_generation_equals_one_prompt_at_a_time(local_backend, tiny_model_dir):
    settings = SamplingSettings(max_new_tokens=6)
    batched = local_backend.generate(PROMPTS, settings)
    single = TransformersBackend(tiny_model_dir, options=BackendOptions(batch_size=1)).generate(PROMPTS, settings)
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(g.num_tokens > 0 for g in batched)


def test_seeded_sampling_repeats_and_seeds_differ(local_backend):
    settings = SamplingSettings(max_new_tokens=8, temperature=1.0, seed=3)
    first, again = local_backend.generate(PROMPTS, settings), local_backend.generate(PROMPTS, settings)
    assert [g.text for g in first] == [g.text for g in again]
    others = [local_backend.generate(PROMPTS, SamplingSettings(8, 1.0, seed=s)) for s in range(4, 8)]
    assert any([g.text for g in o] != [g.text for g in first] for o in others)


def test_stop_string_cuts_the_text(local_backend):
    free = local_backend.generate(PROMPTS, SamplingSettings(max_new_tokens=8))
    prompt, words = next((p, g.text.split()) for p, g in zip(PROMPTS, free) if len(g.text.split()) >= 2)
    cut = local_backend.generate([prompt], SamplingSettings(max_new_tokens=8, stop=(" " + words[1],)))[0]
    assert cut.text == words[0] and cut.finish_reason == "stop" and cut.num_tokens == 2


def test_a_reply_cut_at_max_new_tokens_is_marked_truncated(local_backend, stub_server):
    """Local: a row that ends neither at EOS nor at a stop string within `max_new_tokens` is "length"; HTTP: the
    server's `finish_reason`. `Generation.truncated` is what `raft refine` reads to keep half answers out of ŷ."""
    short = local_backend.generate(PROMPTS, SamplingSettings(max_new_tokens=2))
    assert [(g.finish_reason, g.truncated, g.num_tokens) for g in short] == [("length", True, 2)] * 3
    free = local_backend.generate(PROMPTS, SamplingSettings(max_new_tokens=8))
    prompt, words = next((p, g.text.split()) for p, g in zip(PROMPTS, free) if len(g.text.split()) >= 2)
    stopped = local_backend.generate([prompt], SamplingSettings(max_new_tokens=8, stop=(" " + words[1],)))[0]
    assert (stopped.finish_reason, stopped.truncated) == ("stop", False)
    stub_server.reply = {"choices": [{"message": {"content": "The capital of"}, "finish_reason": "length"}]}
    [reply] = _stub_backend(stub_server).generate(["x"], SamplingSettings(max_new_tokens=3))
    assert (reply.text, reply.finish_reason, reply.truncated) == ("The capital of", "length", True)


def test_plain_text_rendering_without_a_chat_template(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = None
    backend = TransformersBackend(tiny_model_dir, tokenizer=tokenizer)
    assert (
        backend.render([{"role": "system", "content": "Be brief ."}, {"role": "user", "content": "Hi"}])
        == "Be brief .\n\nHi"
    )
    assert backend.render("Question : Hi") == "Question : Hi"


def test_specs_name_the_backend_kind(tiny_model_dir):
    http = load_backend("judge-1@http://127.0.0.1:9/v1")
    assert (
        isinstance(http, OpenAICompatibleBackend)
        and http.model == "judge-1"
        and http.base_url == "http://127.0.0.1:9/v1"
    )
    assert isinstance(load_backend(tiny_model_dir), TransformersBackend)


def test_vllm_spec_without_vllm_says_what_to_do():
    if _has_module("vllm"):
        pytest.skip("vLLM is installed here")
    with pytest.raises(ImportError, match="pip install vllm"):
        load_backend("vllm:some/model")


def _has_module(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


GOOD_REPLY = {
    "choices": [{"message": {"content": "0.9\nmore"}, "finish_reason": "stop"}],
    "usage": {"completion_tokens": 2},
}
# Faults a server can send (`server.script` entries besides HTTP status codes).
FAULTS = {
    "non_utf8": b'{"choices": [{"message": {"content": "\xff\xfe"}}]}',
    "non_json": b"<html>502 Bad Gateway</html>",
    "empty_object": b"{}",
    "in_band_error": b'{"error": {"message": "model overloaded", "code": 503}}',
    "non_string_content": b'{"choices": [{"message": {"content": 5}, "finish_reason": "stop"}]}',
}


class _StubHandler(BaseHTTPRequestHandler):
    """Answers with the next entry of `server.script`: an HTTP status (200 = a completion), a body from `FAULTS`,
    `"truncated"` (fewer bytes than Content-Length, then the connection closes) or `"bad_status_line"`."""

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        step = self.server.script.pop(0) if self.server.script else 200
        if step == "bad_status_line":
            self.wfile.write(b"HTTP/1.1 OK-ish\r\n\r\n")
            self.close_connection = True
            return
        if step in FAULTS:
            status, data = 200, FAULTS[step]
        else:
            reply = self.server.reply if step in (200, "truncated") else {"error": "busy"}
            status, data = (200 if step == "truncated" else step), json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if step == "truncated":
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubHandler)
    server.requests, server.script, server.reply = [], [], GOOD_REPLY
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _stub_backend(server, **options):
    options = {"max_retries": 2, "retry_backoff": 0.01, "api_key_env": "RAFT_TEST_KEY", **options}
    return OpenAICompatibleBackend(
        f"http://127.0.0.1:{server.server_address[1]}/v1", "judge", BackendOptions(**options)
    )


def test_http_retries_transient_errors_and_sends_the_key_from_the_environment(stub_server, monkeypatch):
    monkeypatch.setenv("RAFT_TEST_KEY", "sk-secret-123")
    stub_server.script = [503, 429]
    backend = _stub_backend(stub_server)
    [reply] = backend.generate(["Score this"], SamplingSettings(max_new_tokens=4, stop=("\n",)))
    assert reply.text == "0.9" and reply.num_tokens == 2
    assert len(stub_server.requests) == 3
    path, headers, body = stub_server.requests[-1]
    assert path == "/v1/chat/completions" and headers["authorization"] == "Bearer sk-secret-123"
    assert body["messages"] == [{"role": "user", "content": "Score this"}] and body["max_tokens"] == 4
    assert "sk-secret" not in repr(backend)


def test_http_gives_up_after_the_retries_with_a_clear_error(stub_server):
    stub_server.script = [500, 500, 500, 500]
    with pytest.raises(BackendError, match="failed 3 times; last error: HTTP 500"):
        _stub_backend(stub_server).generate(["x"], SamplingSettings())
    assert len(stub_server.requests) == 3


def test_http_client_errors_are_not_retried(stub_server):
    stub_server.script = [400]
    with pytest.raises(BackendError, match="refused the request"):
        _stub_backend(stub_server).generate(["x"], SamplingSettings())
    assert len(stub_server.requests) == 1


def test_http_unreachable_server_is_a_backend_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    backend = OpenAICompatibleBackend(
        f"http://127.0.0.1:{port}/v1", "m", BackendOptions(max_retries=1, retry_backoff=0.01)
    )
    with pytest.raises(BackendError, match=r"failed 2 times; last error: APIConnectionError"):
        backend.generate(["x"], SamplingSettings())


@pytest.mark.parametrize("fault", ["truncated", "bad_status_line", *FAULTS])
def test_every_server_fault_is_retried_then_answered(stub_server, fault):
    stub_server.script = [fault]
    [reply] = _stub_backend(stub_server).generate(["x"], SamplingSettings(stop=("\n",)))
    assert reply.text == "0.9" and len(stub_server.requests) == 2


@pytest.mark.parametrize(
    "fault, message",
    [("non_utf8", "not UTF-8"), ("non_json", "not JSON"), ("empty_object", "has no choices"),
     ("in_band_error", "error object: .*model overloaded"), ("non_string_content", "content is not text"),
     ("truncated", "APIConnectionError"), ("bad_status_line", "APIConnectionError")],
)  # fmt: skip
def test_a_fault_that_persists_is_one_backend_error_naming_it(stub_server, fault, message):
    stub_server.script = [fault] * 3
    with pytest.raises(BackendError, match=f"failed 3 times; last error: .*{message}"):
        _stub_backend(stub_server).generate(["x"], SamplingSettings())
    assert len(stub_server.requests) == 3


def test_optional_reply_fields_may_be_missing_or_malformed(stub_server):
    stub_server.reply = {"choices": [{"message": {"content": [{"type": "text", "text": "0.7"}]}}], "usage": [2]}
    [reply] = _stub_backend(stub_server).generate(["x"], SamplingSettings())
    assert (reply.text, reply.num_tokens, reply.finish_reason) == ("0.7", 0, None)


def test_openai_backend_against_a_real_transformers_serve(served_model, local_backend):
    backend = load_backend(served_model, BackendOptions(max_concurrency=4, timeout=60))
    settings = SamplingSettings(max_new_tokens=5)
    replies = backend.generate(PROMPTS * 2, settings)
    assert len(replies) == 6 and all(r.num_tokens > 0 for r in replies)
    assert [r.text for r in replies[:3]] == [r.text for r in replies[3:]]  # greedy: the same under concurrency
    local = local_backend.generate(PROMPTS, settings)
    assert [r.text for r in replies[:3]] == [g.text for g in local]  # the same model and template as locally


def test_refine_with_a_judge_served_over_http(served_model, tmp_path):
    from datasets import Dataset
    from refine_helpers import ScriptedBackend

    from raft_trainer.backends import BackendPool
    from raft_trainer.refine import RefineConfig, refine

    data = Dataset.from_dict({"question": ["What is two plus two ?"], "answer": ["Two plus two is four ."]})
    config = RefineConfig(output_dir=str(tmp_path), rewrite_model="rewriter", judge_models=[served_model],
                          similarity_threshold=0.0, fusion_rounds=1, judge_max_new_tokens=3, stop_sequences=[])  # fmt: skip
    # No stop strings: `transformers serve` 5.23 answers 500 to `stop` with a word-level tokenizer (its
    # StopStringCriteria cannot map that vocabulary); real BPE/SentencePiece tokenizers are fine. The rewrite and
    # the fused answer are scripted: the tiny model's own are cut at the token cap, and a cut reply is never judged.
    summary = refine(config, data, backends=BackendPool(rewriter=ScriptedBackend("rewriter", lambda p: "It is four.")))
    [row] = [json.loads(line) for line in open(tmp_path / "refined.jsonl")]
    assert row["provenance"]["models"]["judges"] == [served_model]
    assert summary["tokens_generated"]["judge"] > 0 and len(row["provenance"]["candidates"][0]["scores"]) == 1


def test_a_missing_local_model_is_a_clear_error(tmp_path):
    with pytest.raises(OSError, match=r"(?s)Cannot load the model .*name@http://host:port/v1"):
        load_backend(str(tmp_path / "no-such-model"))
