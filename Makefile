.PHONY: install test test-fast style quality quickstart

install:
	pip install torch==2.13.0 && pip install -e ".[dev]"

test:
	python -m pytest

test-fast:
	python -m pytest -m "not slow"

style:
	ruff check --fix raft_trainer tests examples && ruff format raft_trainer tests examples

quality:
	ruff check raft_trainer tests examples && ruff format --check raft_trainer tests examples

quickstart:
	raft train --max_steps 5 --per_device_train_batch_size 2 --max_completion_length 32 --output_dir runs/quickstart
