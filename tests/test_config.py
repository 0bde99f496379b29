"""RAFTConfig: the paper's defaults, validation with named fields, CLI parsing of dict fields."""

import pytest

from raft_trainer import RAFTConfig
from raft_trainer.cli.train import make_parser


def test_defaults_are_the_papers_values(tmp_path):
    args = RAFTConfig(output_dir=str(tmp_path))
    assert (args.distillation_topk, args.distillation_temperature, args.ema_beta) == (512, 1.5, 0.9)
    assert args.loss_balancing == "ema" and args.ema_eps == 1e-8 and args.use_distillation and args.answer_conditioning
    assert "{reference}" in args.teacher_template and "{prompt}" in args.teacher_template
    assert args.bf16 is False  # no GPU here: the unset bf16 falls back to fp32 instead of raising


def test_invalid_values_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"distillation_temperature=0.0.*num_generations=0"):
        RAFTConfig(output_dir=str(tmp_path), distillation_temperature=0.0, num_generations=0)
    with pytest.raises(ValueError, match="placeholders"):
        RAFTConfig(output_dir=str(tmp_path), teacher_template="no placeholders here")
    RAFTConfig(output_dir=str(tmp_path), teacher_template="{prompt}", answer_conditioning=False)  # not used then


def test_cli_parses_raft_flags_and_json_dict_fields(tmp_path):
    script_args, args, model_args = make_parser().parse_args_and_config(
        args=["--output_dir", str(tmp_path), "--distillation_topk", "64", "--loss_balancing", "fixed",
              "--teacher_model_init_kwargs", '{"dtype": "float32"}', "--model_name_or_path", "some/model"]
    )  # fmt: skip
    assert args.distillation_topk == 64 and args.loss_balancing == "fixed"
    assert args.teacher_model_init_kwargs == {"dtype": "float32"}
    assert model_args.model_name_or_path == "some/model"
