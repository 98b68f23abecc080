"""Work is never lost and logs stay readable: Ctrl-C writes a checkpoint that ``--ckpt_path last``
resumes; a missing checkpoint is one line; the loss is in ``metrics.csv`` at the Trainer's
interval; a run whose output is not a terminal prints a line every tenth of the run."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from flowbridge.cli import main
from tests.training.recipes import tiny_recipe

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}


def test_sigint_to_fit_leaves_a_checkpoint_that_ckpt_path_last_resumes(tmp_path: Path) -> None:
    recipe = tiny_recipe(tmp_path, max_steps=1_000_000)
    checkpoints = tmp_path / "run" / "checkpoints"
    proc = subprocess.Popen([sys.executable, "-m", "flowbridge", "fit", "--config", str(recipe)], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (checkpoints / "last.ckpt").exists():  # training has started and saves every step
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "fit did not start"
            time.sleep(0.2)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("flowbridge:")]
    assert len(lines) == 1 and "checkpoint saved to" in lines[0] and "--ckpt_path last" in lines[0], err[-3000:]
    assert "Traceback" not in err
    stopped = torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"]
    assert stopped >= 1

    # Resume: the step count continues from the interrupted run.
    assert main(["fit", "--config", str(recipe), "--ckpt_path", "last", "--trainer.max_steps", str(stopped + 5)]) == 0
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == stopped + 5


def test_missing_checkpoints_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = str(tiny_recipe(tmp_path, max_steps=3))
    assert main(["fit", "--config", recipe, "--ckpt_path", "last"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ckpt_path last: no last.ckpt in" in err[0], err
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()  # nothing started from scratch
    assert main(["fit", "--config", recipe, "--ckpt_path", str(tmp_path / "missing.ckpt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"flowbridge: error: --ckpt_path {tmp_path / 'missing.ckpt'}: no such checkpoint"]
    for command in ("validate", "predict"):
        assert main([command, "--config", recipe, "--ckpt_path", "last"]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_train_loss_rows_in_metrics_csv_follow_the_trainers_interval(tmp_path: Path) -> None:
    recipe = tiny_recipe(tmp_path, max_steps=40, trainer={"logger": True, "log_every_n_steps": 7})
    assert main(["fit", "--config", str(recipe)]) == 0
    files = list((tmp_path / "run").rglob("metrics.csv"))
    assert len(files) == 1
    with files[0].open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    # Lightning logs after steps 7, 14, ... (its row holds the 0-based index of the step: 6, 13, ...).
    assert [int(r["step"]) for r in rows] == [k - 1 for k in range(7, 41, 7)]
    assert all(float(r["train/loss"]) > 0 for r in rows)


def test_a_non_interactive_run_prints_a_line_every_tenth_of_the_run(tmp_path: Path) -> None:
    recipe = tiny_recipe(tmp_path, max_steps=200, trainer={"enable_progress_bar": True, "logger": True})
    proc = subprocess.run([sys.executable, "-m", "flowbridge", "fit", "--config", str(recipe)], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout.splitlines()
    progress = [ln for ln in out if ln.startswith("step ")]
    assert [ln.split()[1] for ln in progress] == [f"{k}/200" for k in range(20, 200, 20)], out
    assert "\r" not in proc.stdout + proc.stderr  # no bar redraws
    assert len(out) + len(proc.stderr.splitlines()) < 25, proc.stdout + proc.stderr
    assert any(ln.startswith("checkpoint: ") for ln in out) and any(ln.startswith("metrics: ") for ln in out)
    assert "Warning" not in proc.stderr, proc.stderr
