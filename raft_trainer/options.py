"""Command-line and YAML options as dataclass fields: each field's `help` is its documentation (`--help`, the options
tables of docs/refinement.md and docs/evaluation.md). Shared by the configs of refine, eval, the lab and the backends."""

from __future__ import annotations

from dataclasses import field


def option(help: str, **kwargs):
    """A dataclass field documented by `help` (`kwargs`: `default` or `default_factory`, as for `dataclasses.field`)."""
    return field(metadata={"help": help}, **kwargs)
