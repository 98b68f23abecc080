"""Distributed training is Lightning's: DDP on two CPU processes, interrupted and resumed.

Both ranks end with identical weights, and a run stopped by SIGINT (``SaveOnInterrupt``: the ranks
agree on a step, rank 0 writes ``last.ckpt``) and resumed with ``--ckpt_path last`` ends where the
uninterrupted run ends: the same weights (raw and EMA), ``global_step`` and learning rate. Both runs
use two processes with one thread each, so the arithmetic is the same and the comparison exact.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.training.recipes import tiny_recipe

ROOT = Path(__file__).resolve().parents[2]
LR = {"lr_scheduler": {"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 3, "gamma": 0.7}}}


def _fit(recipe: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "flowbridge", "fit", "--config", str(recipe), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )


def _recipe(tmp_path: Path, name: str, stop_at: int | None) -> tuple[Path, Path]:
    out = tmp_path / name / "weights"
    callbacks = [
        {"class_path": "tests.training.ddp_helpers.SaveRankWeights", "init_args": {"folder": str(out)}},
        {"class_path": "tests.training.ddp_helpers.SaveLR", "init_args": {"folder": str(out)}},
    ]
    if stop_at is not None:
        callbacks.append({"class_path": "tests.training.ddp_helpers.RequestStopAt", "init_args": {"step": stop_at}})
    recipe = tiny_recipe(tmp_path / name, max_steps=20, model=LR, callbacks=callbacks,
                         trainer={"strategy": "ddp", "devices": 2})
    return recipe, out


@pytest.mark.slow
def test_ddp_two_cpu_ranks_interrupted_and_resumed_equal_the_uninterrupted_run(tmp_path: Path) -> None:
    straight, straight_out = _recipe(tmp_path, "straight", None)
    proc = _fit(straight)
    assert proc.returncode == 0, proc.stderr[-3000:]

    stopped, stopped_out = _recipe(tmp_path, "stopped", stop_at=10)
    proc = _fit(stopped)
    # The ranks agree every 16 steps: the SIGINT delivered at step 10 stops both at step 16.
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "at step 16; checkpoint saved" in proc.stderr
    last = tmp_path / "stopped" / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 16
    resumed, _ = _recipe(tmp_path, "stopped", None)  # the same run, without the stop
    proc = _fit(resumed, "--ckpt_path", "last")
    assert proc.returncode == 0, proc.stderr[-3000:]

    for out in (straight_out, stopped_out):
        ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
        assert [r["world_size"] for r in ranks] == [2, 2] and [r["step"] for r in ranks] == [20, 20]
        for key in ranks[0]["state"]:
            assert torch.equal(ranks[0]["state"][key], ranks[1]["state"][key]), key
    a = torch.load(straight_out / "rank0.pt", weights_only=True)["state"]
    b = torch.load(stopped_out / "rank0.pt", weights_only=True)["state"]
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)
    lr_a, lr_b = (torch.load(o / "lr.pt", weights_only=True) for o in (straight_out, stopped_out))
    assert lr_a == lr_b and lr_a["step"] == 20
    assert lr_a["lr"] == pytest.approx(0.01 * 0.7 ** (20 // 3), rel=1e-12)  # StepLR multiplies step by step
