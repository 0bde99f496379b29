"""The lab's domain data: shipped domains (question / verbose gold answer / accepted short answers, split by entity)
or the user's own files, read once and turned into RAFT's prompt/completion rows."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

PROMPT_TEMPLATE = "Question: {question}\nAnswer:"


@dataclass(frozen=True)
class Domain:
    """A domain's training and held-out files and how its answers are matched."""

    name: str
    train_file: str
    test_file: str
    case_sensitive: bool = False


def _shipped(name: str) -> str:
    return str(resources.files("raft_trainer.lab") / "data" / name)


SHIPPED = {
    "capitals": Domain("capitals", _shipped("capitals_train.jsonl"), _shipped("capitals_test.jsonl")),
    "elements": Domain("elements", _shipped("elements_train.jsonl"), _shipped("elements_test.jsonl"), True),
    "books": Domain("books", _shipped("books_train.jsonl"), _shipped("books_test.jsonl")),
}
GENERAL_PROBES = _shipped("general_probes.jsonl")


def resolve_domain(domain: str | None, train_file: str | None, test_file: str | None, case_sensitive=None) -> Domain:
    """The shipped domain `domain` (default: capitals), or the user's files."""
    if train_file is not None:
        found = Domain("custom", train_file, test_file)
    elif (domain or "capitals") in SHIPPED:
        found = SHIPPED[domain or "capitals"]
    else:
        raise ValueError(f"Unknown domain {domain!r}: choose among {sorted(SHIPPED)} or give --domain_dataset.")
    if case_sensitive is not None:
        found = Domain(found.name, found.train_file, found.test_file, case_sensitive)
    return found


def read_qa_rows(path: str, limit: int | None = None) -> list[dict]:
    """`question`, `answer` and `aliases` (list, optional) of every row of a data file; a clear error otherwise."""
    from ..data import load_data

    try:
        dataset = load_data(path)
    except (FileNotFoundError, ValueError) as error:
        raise ValueError(f"Cannot read the domain file {path!r}: {error}") from error
    missing = {"question", "answer"} - set(dataset.column_names)
    if missing:
        raise ValueError(
            f"{path} has columns {dataset.column_names}; the lab needs question, answer (and optionally "
            f"aliases), missing {sorted(missing)}."
        )
    rows = []
    for i, row in enumerate(dataset):
        if not (
            isinstance(row["question"], str)
            and row["question"].strip()
            and isinstance(row["answer"], str)
            and row["answer"].strip()
        ):
            raise ValueError(f"{path}, row {i}: question and answer must be non-empty text.")
        aliases = row.get("aliases") or []
        rows.append(
            {
                "id": str(row.get("id", i)),
                "question": row["question"].strip(),
                "answer": row["answer"].strip(),
                "aliases": [a for a in aliases if isinstance(a, str)],
            }
        )
    if not rows:
        raise ValueError(f"The domain file {path} has no rows.")
    return rows[:limit] if limit else rows


def prompt_of(question: str) -> str:
    return PROMPT_TEMPLATE.format(question=question)


def training_rows(rows: list[dict]) -> list[dict]:
    """Plain prompt/completion rows (the completion keeps a leading space, as the prompt ends with `Answer:`)."""
    return [{"id": r["id"], "prompt": prompt_of(r["question"]), "completion": " " + r["answer"]} for r in rows]
