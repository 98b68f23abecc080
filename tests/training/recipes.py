"""Tiny recipes for the training tests (small nets, few steps, no logging)."""

from __future__ import annotations

from pathlib import Path

import yaml


def tiny_recipe(
    tmp_path: Path,
    *,
    max_steps: int = 25,
    data: dict | None = None,
    model: dict | None = None,
    callbacks: list[dict] | None = None,
    trainer: dict | None = None,
    name: str = "tiny.yaml",
) -> Path:
    """Writes a flow-matching recipe on 640 moons points (10 batches of 64 per epoch) and returns its path."""
    cfg = {
        "seed_everything": 0,
        "trainer": {
            "max_steps": max_steps,
            "accelerator": "cpu",
            "devices": 1,
            "logger": False,
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "limit_val_batches": 0,
            "default_root_dir": str(tmp_path / "run"),
            "callbacks": [
                {"class_path": "lightning.pytorch.callbacks.EMAWeightAveraging", "init_args": {"decay": 0.9}},
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"save_last": True, "every_n_train_steps": 1},
                },
            ]
            + (callbacks or []),
            **(trainer or {}),
        },
        "model": {
            "net": {"class_path": "flowbridge.nets.MLP", "init_args": {"dim": 2, "hidden": 32, "depth": 2}},
            "path": {
                "class_path": "flowbridge.paths.GaussianPath",
                "init_args": {"schedule": {"class_path": "flowbridge.paths.LinearSchedule"}},
            },
            "objective": {"class_path": "flowbridge.objectives.FlowMatching"},
            "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}},
            "seed": 3,
            **(model or {}),
        },
        "data": data
        or {
            "class_path": "flowbridge.training.Toy2D",
            "init_args": {"name": "moons", "n": 640, "val_size": 200, "batch_size": 64, "seed": 1},
        },
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
