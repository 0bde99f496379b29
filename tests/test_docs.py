"""The docs stay true to the code: every `module:name` they cite exists, every RAFTConfig field is documented."""

import dataclasses
import importlib
import re
from pathlib import Path

from trl import SFTConfig

from raft_trainer import RAFTConfig

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_cited_function_exists():
    cited = set(re.findall(r"`([a-z_.]+):([A-Za-z_][A-Za-z_.]*)`", (DOCS / "paper_to_code.md").read_text()))
    cited.discard(("module", "function"))
    assert len(cited) > 50
    for module, name in sorted(cited):
        target = importlib.import_module(f"raft_trainer.{module}")
        for part in name.split("."):
            target = getattr(target, part)  # AttributeError names the stale reference


def test_every_raft_field_is_documented_in_configuration_and_docstring():
    sft_fields = {f.name for f in dataclasses.fields(SFTConfig)}
    raft_fields = [f.name for f in dataclasses.fields(RAFTConfig) if f.name not in sft_fields]
    assert len(raft_fields) == 29
    page = (DOCS / "configuration.md").read_text()
    for name in raft_fields:
        assert f"`{name}`" in page, name
        assert f"{name} (`" in RAFTConfig.__doc__, name


def test_every_refine_and_eval_option_is_documented():
    from raft_trainer.eval import EvalConfig
    from raft_trainer.refine import RefineConfig

    for config, page in ((RefineConfig, "refinement.md"), (EvalConfig, "evaluation.md")):
        text = (DOCS / page).read_text()
        for f in dataclasses.fields(config):
            assert f"| `{f.name}` |" in text, (page, f.name)
            assert f.metadata.get("help"), f.name
