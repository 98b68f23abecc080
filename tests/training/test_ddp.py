"""Distributed training is Lightning's: DDP on two CPU processes ends with identical weights on both ranks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.training.recipes import tiny_recipe

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_ddp_two_cpu_ranks_end_with_identical_weights(tmp_path: Path) -> None:
    out = tmp_path / "weights"
    recipe = tiny_recipe(
        tmp_path,
        max_steps=6,
        callbacks=[{"class_path": "tests.training.ddp_helpers.SaveRankWeights", "init_args": {"folder": str(out)}}],
        trainer={"strategy": "ddp", "devices": 2},
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "flowbridge", "fit", "--config", str(recipe)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["step"] for r in ranks] == [6, 6]
    a, b = ranks[0]["state"], ranks[1]["state"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
