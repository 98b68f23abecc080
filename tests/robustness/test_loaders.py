"""Corrupt and truncated files: every loader gives ONE clear message naming the file.

Loaders swept: ``flowbridge fit --config`` (the command line, in process), ``flowbridge sample
--ckpt``, :func:`flowbridge.cli.load_module`, :func:`flowbridge.cli.read_sampler_preset`, the data
files of :class:`flowbridge.training.TensorFile`, :func:`flowbridge.scale.merge_shards`, and
:meth:`flowbridge.interop.FlowPrior.from_checkpoint`. Also: every ``torch.load`` in ``src`` passes
``weights_only=True`` (and so does every ``load_from_checkpoint``).
"""

from __future__ import annotations

import functools
import itertools
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import strategies as st

from tests.robustness.harness import Bad
from tests.robustness.sweep import Corruption, Entry, Kind, sweep_test

SRC = Path(__file__).resolve().parents[2] / "src" / "flowbridge"
_unique = itertools.count()  # fresh file names (derandomized draws repeat)


@functools.cache
def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="fb_loaders_"))


@functools.cache
def good_checkpoint() -> Path:
    """A real (tiny) checkpoint written by ``flowbridge fit``, shared by the checkpoint cases."""
    from flowbridge.cli import main

    out = workdir() / "run"
    rc = main([
        "fit", "--config", str(SRC.parents[1] / "models" / "fm_moons.yaml"), "--trainer.max_steps", "2", "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(out), "--trainer.limit_val_batches", "0",
        "--trainer.enable_model_summary", "false",
    ])
    assert rc == 0, "flowbridge fit of the tiny recipe failed"
    ckpt = sorted(out.rglob("*.ckpt"))
    assert ckpt, "no checkpoint written"
    return ckpt[-1]


def corrupt(kind: str, good: Path, draw) -> Path:
    """A corrupted copy of ``good``: truncated, random bytes, another object saved with torch, empty."""
    path = workdir() / f"{kind.replace(' ', '_')}_{next(_unique)}{good.suffix}"
    data = good.read_bytes() if good.exists() else b""
    if kind == "truncated":
        path.write_bytes(data[: max(1, len(data) // draw(st.sampled_from([2, 3, 10])))])
    elif kind == "random bytes":
        g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
        path.write_bytes(bytes(torch.randint(0, 256, (draw(st.integers(1, 4096)),), generator=g, dtype=torch.uint8).tolist()))
    elif kind == "not a checkpoint":
        torch.save(draw(st.sampled_from([{"weights": torch.zeros(2)}, torch.zeros(3), [1, 2, 3]])), path)
    elif kind == "empty file":
        path.write_bytes(b"")
    return path


FILE_KINDS = ("truncated", "random bytes", "not a checkpoint", "empty file")


def file_corruptions(key: str, names: tuple[str, ...], errors: tuple[type[BaseException], ...]) -> tuple[Corruption, ...]:
    def apply(kind: str):
        return lambda d, i: {**i, key: corrupt(kind, i[key], d)}

    return tuple(Corruption(Bad(f"{key}: {k}", names, "raise", errors), key, apply(k)) for k in FILE_KINDS)


def _config_error():
    from flowbridge.errors import CheckpointError, ConfigError

    return (ConfigError, CheckpointError)


def _load_module(i: dict):
    from flowbridge.cli import load_module

    return torch.tensor(float(sum(p.numel() for p in load_module(i["ckpt"]).parameters())))


def _sample_cli(i: dict):
    from flowbridge.cli import main

    import contextlib
    import io

    from flowbridge.cli import ConfigError

    out = workdir() / "samples.pt"
    err, stdout = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(stdout):
        rc = main(["sample", "--ckpt", str(i["ckpt"]), "--num", "4", "--steps", "2", "--out", str(out)])
    lines = err.getvalue().strip().splitlines()
    if rc != 0:
        # The command's contract: exit status 2 and exactly one line "flowbridge: error: ...".
        if rc == 2 and len(lines) == 1 and lines[0].startswith("flowbridge: error:"):
            raise ConfigError(lines[0])
        raise RuntimeError(f"exit status {rc} with stderr {lines}")
    return torch.load(out, weights_only=True)["x"]


def _flow_prior(i: dict):
    from flowbridge.interop import FlowPrior

    prior = FlowPrior.from_checkpoint(i["ckpt"], event_shape=(2,), steps=2)
    return prior.sample((2,))


def _tensor_file(i: dict):
    from flowbridge.training import TensorFile

    dm = TensorFile(path=str(i["data"]), batch_size=4)
    dm.setup("fit")
    return next(iter(dm.train_dataloader())).target


def _merge(i: dict):
    from flowbridge.scale import merge_shards

    d = i["shards"]
    return merge_shards(d, 8, 4)


@functools.cache
def good_data() -> Path:
    path = workdir() / "data.pt"
    torch.save(torch.randn(32, 2), path)
    return path


def shard_dir(damage: str | None, draw) -> Path:
    from flowbridge.scale import ShardDataset

    d = workdir() / f"shards_{damage}_{next(_unique)}".replace(" ", "_")
    d.mkdir()
    ranges = ShardDataset(8, 4).ranges
    for r in ranges:
        torch.save(torch.randn(r.stop - r.start, 2), d / r.name)
    if damage is not None:
        victim = d / ranges[-1].name
        if damage == "wrong shape":
            torch.save(torch.randn(4, 3), victim)
        elif damage == "missing":
            victim.unlink()
        else:
            good = workdir() / "good_shard.pt"
            shutil.copy(d / ranges[0].name, good)
            shutil.move(corrupt(damage, good, draw), victim)
    return d


@functools.cache
def good_preset() -> Path:
    """A tuned preset as ``TunedSolver.save`` writes it (plms, 6 steps, multipliers off 1)."""
    from flowbridge.samplers.tuning import TunedSolver

    grid = torch.linspace(0.05, 0.95, 7, dtype=torch.float64) ** 1.3
    rows = [[1.0 + 1e-3 * (k + j) for j in range(min(k + 1, 4))] for k in range(6)]
    path = workdir() / "tuned.yaml"
    TunedSolver("plms", 6, grid, {"weight_multipliers": rows}).save(path)
    return path


def _load_preset(i: dict):
    from flowbridge.samplers.tuning import TunedSolver, load_preset

    return TunedSolver.from_section(load_preset(i["preset"]), source=str(i["preset"])).grid


def _read_preset(i: dict):
    from flowbridge.samplers.presets import read_preset
    from flowbridge.samplers.tuning import TunedSolver

    text = Path(i["preset"]).read_bytes().decode("utf-8", errors="replace")  # read_preset takes text
    return TunedSolver.from_section(read_preset(text, source=str(i["preset"])), source=str(i["preset"])).grid


def inputs(draw) -> dict:
    return {"ckpt": good_checkpoint(), "data": good_data(), "shards": shard_dir(None, draw), "preset": good_preset()}


SHARDS = tuple(
    Corruption(Bad(f"shards: {k}", ("shard",), "raise", (ValueError, FileNotFoundError)), "shards",
               (lambda kind: lambda d, i: {**i, "shards": shard_dir(kind, d)})(k))
    for k in (*FILE_KINDS, "wrong shape", "missing")
)


def _kind() -> Kind:
    from flowbridge.training import DataError

    ckpt_names = ("ckpt", "checkpoint")
    return Kind(
        "loaders", inputs,
        (
            *file_corruptions("ckpt", ckpt_names, _config_error()),
            *file_corruptions("data", ("data", "could not be read", "no such", ".pt"), (DataError,)),
            *SHARDS,
            *file_corruptions("preset", ("preset", ".yaml"), _config_error()),
        ),
        (
            Entry("flowbridge.cli.load_module", _load_module, ("ckpt",)),
            Entry("flowbridge.cli.main", _sample_cli, ("ckpt",), method="sample --ckpt"),
            Entry("flowbridge.interop.FlowPrior", _flow_prior, ("ckpt",), method="from_checkpoint"),
            Entry("flowbridge.training.TensorFile", _tensor_file, ("data",), method="data file"),
            Entry("flowbridge.scale.merge_shards", _merge, ("shards",)),
            Entry("flowbridge.samplers.presets.load_preset", _load_preset, ("preset",)),
            Entry("flowbridge.samplers.presets.read_preset", _read_preset, ("preset",)),
        ),
    )


KIND = _kind()
test_loaders, test_loaders_thorough = sweep_test(KIND)


# ----------------------------------------------------------------------------------------------
# configs: the command line prints one line naming the file (exit status 2), never a traceback

CONFIGS = {
    "invalid YAML": "model: [unclosed\n  - x: :\n",
    "empty": "",
    "a list": "- 1\n- 2\n",
    "a scalar": "42\n",
    "random bytes": None,
    "unknown key": "model:\n  no_such_argument: 3\n",
}


@pytest.mark.parametrize("what", list(CONFIGS))
def test_fit_config_errors_are_one_line(what: str, capsys: pytest.CaptureFixture[str]) -> None:
    from flowbridge.cli import main

    path = workdir() / f"config_{what.replace(' ', '_')}.yaml"
    text = CONFIGS[what]
    if text is None:
        path.write_bytes(bytes(range(128, 256)) * 4)
    else:
        path.write_text(text)
    args = ["fit", "--config", str(path), "--trainer.max_steps", "1"]
    if what == "unknown key":
        args = ["fit", "--config", str(SRC.parents[1] / "models" / "fm_moons.yaml"), "--config", str(path), "--trainer.max_steps", "1"]
    rc = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, f"exit status {rc} for a config that is {what}"
    assert len(err) == 1 and err[0].startswith("flowbridge: error:"), f"not one error line: {err}"
    assert str(path) in err[0] or "no_such_argument" in err[0], f"the message must name the file or key: {err[0]}"


@pytest.mark.parametrize("what", ["invalid YAML", "empty", "a list", "random bytes"])
def test_sampler_preset_errors_name_the_file(what: str) -> None:
    from flowbridge.cli import ConfigError, read_sampler_preset

    path = workdir() / f"preset_{what.replace(' ', '_')}.yaml"
    text = CONFIGS[what]
    path.write_bytes(bytes(range(128, 256))) if text is None else path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        read_sampler_preset(path)


# ----------------------------------------------------------------------------------------------
# weights_only everywhere

LOAD = re.compile(r"torch\.load\(|load_from_checkpoint\(")


def _calls(text: str) -> list[tuple[int, str]]:
    """Each ``torch.load(...)`` / ``load_from_checkpoint(...)`` call with its full argument text."""
    out = []
    for m in LOAD.finditer(text):
        depth, j = 0, m.end() - 1
        while j < len(text):
            depth += {"(": 1, ")": -1}.get(text[j], 0)
            if depth == 0:
                break
            j += 1
        out.append((text.count("\n", 0, m.start()) + 1, text[m.start(): j + 1]))
    return out


def test_every_torch_load_in_src_is_weights_only() -> None:
    offenders, seen = [], 0
    for path in sorted(SRC.rglob("*.py")):
        for line, call in _calls(path.read_text()):
            if call.startswith("def ") or "weights_only=True" in call.replace(" ", ""):
                seen += 1
                continue
            offenders.append(f"{path.relative_to(SRC.parent)}:{line}: {call[:120]}")
    assert not offenders, f"torch.load / load_from_checkpoint without weights_only=True: {offenders}"
    assert seen >= 3, "the grep found no loads at all: is SRC right?"


def test_the_grep_catches_a_bare_load() -> None:
    assert _calls("x = torch.load(p, map_location='cpu')\ny = torch.load(\n  q,\n  weights_only=True)\n") == [
        (1, "torch.load(p, map_location='cpu')"), (2, "torch.load(\n  q,\n  weights_only=True)")]
