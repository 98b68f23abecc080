"""experiments/gpu_check.py at its smallest size on the CPU, so that the device check never rots."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "experiments" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_cpu_smoke_run_writes_every_table(tmp_path):
    pytest.importorskip("diffusers")
    gpu_check = _load()
    out = tmp_path / "gpu.md"
    gpu_check.main(["--device", "cpu", "--tiny", "--skip", "recipes", "--out", str(out)])
    text = out.read_text()
    assert "## cpu:" in text and "failed" not in text
    for heading in ("Device against float64 CPU", "Step loops", "Sampler overhead at batch 1", "Sampler overhead on a UNet"):
        assert heading in text
    # On the CPU the "device" run is the reference run: every entry must agree exactly or name its error.
    rows = [line for line in text.splitlines() if line.startswith("| solver `") or line.startswith("| SMC `")
            or line.startswith("| posterior `")]
    assert len(rows) > 30
    assert all(line.endswith("| 0.0e+00 |") for line in rows), [r for r in rows if not r.endswith("| 0.0e+00 |")]
    # A second run replaces its own section and keeps the others.
    out.write_text(text + "## cuda: kept\n\nother device\n")
    gpu_check.write(out, "cpu", ["## cpu: again", ""])
    again = out.read_text()
    assert again.count("## cpu:") == 1 and "## cuda: kept" in again and "## cpu: again" in again
