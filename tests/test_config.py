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
    script_args, args, model_args, _mixture = make_parser().parse_args_and_config(
        args=["--output_dir", str(tmp_path), "--distillation_topk", "64", "--loss_balancing", "fixed",
              "--teacher_model_init_kwargs", '{"dtype": "float32"}', "--model_name_or_path", "some/model"]
    )  # fmt: skip
    assert args.distillation_topk == 64 and args.loss_balancing == "fixed"
    assert args.teacher_model_init_kwargs == {"dtype": "float32"}
    assert model_args.model_name_or_path == "some/model"


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("field", "bad", "good"),
    [
        ("fixed_lambda", [NAN, INF, -1.0], [0.0, 0.1, 5.0]),
        ("distillation_temperature", [NAN, INF, 0.0, -1.0], [0.5, 1.5]),
        ("distillation_topk", [0, -3], [1, 512]),
        ("distillation_chunk_size", [0], [1, 256]),
        ("ema_beta", [NAN, -0.1, 1.0, 1.5], [0.0, 0.9]),
        ("ema_eps", [NAN, INF, -1e-8], [0.0, 1e-8]),
        ("max_teacher_prompt_length", [0, -5], [None, 1, 512]),
        ("max_completion_length", [0], [1, 256]),
        ("temperature", [NAN, INF, 0.0], [0.7, 1.0]),
        ("top_p", [NAN, 0.0, 1.5], [0.9, 1.0]),
        ("top_k", [-1, NAN], [0, 50]),
        ("num_generations", [0], [1, 4]),
        ("vllm_gpu_memory_utilization", [0.0, 1.2, NAN], [0.3, 1.0]),
        ("learning_rate", [NAN, INF, -1e-5], [0.0, 3e-5]),
        ("loss_balancing", ["adaptive"], ["ema", "fixed"]),
    ],
)
def test_every_numeric_field_refuses_non_finite_and_out_of_range_values(tmp_path, field, bad, good):
    for value in bad:
        with pytest.raises(ValueError, match=rf"{field}={value!r} \(must be "):
            RAFTConfig(output_dir=str(tmp_path), **{field: value})
    for value in good:
        assert getattr(RAFTConfig(output_dir=str(tmp_path), **{field: value}), field) == value


def test_input_errors_are_typed_and_the_cli_prints_the_same_message(tmp_path, capsys):
    """The API raises `DataError`/`ConfigError` (both `ValueError`s); `raft` prints the same message on one line."""
    from raft_trainer import ConfigError, DataError
    from raft_trainer.cli.main import main as raft
    from raft_trainer.data import load_data

    with pytest.raises(DataError) as data_error:
        load_data(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ConfigError, match="fixed_lambda=nan"):
        RAFTConfig(output_dir=str(tmp_path), fixed_lambda=float("nan"))
    assert issubclass(DataError, ValueError) and issubclass(ConfigError, ValueError)
    with pytest.raises(SystemExit) as exit_info:
        raft(["refine", "--dataset_name", str(tmp_path / "missing.jsonl"), "--output_dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[0] == f"raft refine: error: {data_error.value}"
