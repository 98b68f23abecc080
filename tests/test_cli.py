"""The flowbridge command: config composition, --print_config, bad input, and `flowbridge sample`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from flowbridge.cli import condense_error, main
from flowbridge.errors import ConfigError
from tests.training.recipes import tiny_recipe

ROOT = Path(__file__).resolve().parents[1]


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("flowbridge: error:")]
    assert len(err) == 1, err
    return err[0]


def _no_training(tmp_path: Path) -> bool:
    return not (tmp_path / "run" / "checkpoints").exists()


def _override(tmp_path: Path, text: str) -> str:
    path = tmp_path / "override.yaml"
    path.write_text(text)
    return str(path)


def test_print_config_composes_a_model_recipe_with_a_sampler_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "--config", str(ROOT / "models/fm_moons.yaml"), "--config", str(ROOT / "samplers/rk4.yaml"), "--print_config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["model"]["sampler"]["solver"] == "rk4" and cfg["model"]["sampler"]["steps"] == 10
    assert cfg["model"]["net"]["class_path"] == "flowbridge.nets.MLP"  # the recipe is kept


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model:\n  foo: 1\n", "model.foo"),
        ("model:\n  net:\n    class_path: flowbridge.nets.Nope\n", "model.net: unknown class_path 'flowbridge.nets.Nope'"),
        ("model:\n  net:\n    init_args:\n      hidden: wide\n", "model.net.hidden: Expected a <class 'int'>"),
        ("model:\n  sampler:\n    solver: nosuch\n", "sampler.solver: unknown solver 'nosuch'"),
    ],
    ids=["unknown-key", "unknown-class-path", "wrong-type", "unknown-solver"],
)
def test_bad_config_stops_before_training_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, expected: str
) -> None:
    recipe = tiny_recipe(tmp_path)
    assert main(["fit", "--config", str(recipe), "--config", _override(tmp_path, override)]) == 2
    assert expected in _error_line(capsys)
    assert _no_training(tmp_path)


def _file_recipe(tmp_path: Path, data_file: Path) -> Path:
    data = {"class_path": "flowbridge.training.TensorFile", "init_args": {"path": str(data_file), "batch_size": 32}}
    return tiny_recipe(tmp_path, data=data)


@pytest.mark.parametrize("kind", ["nan", "rank", "width"])
def test_bad_data_file_stops_before_training_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    x = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
    if kind == "nan":
        x[17, 1] = np.nan
    elif kind == "rank":
        x = x[:, 0]
    else:
        x = np.concatenate([x, x], axis=1)  # (200, 4) samples for a net of dim 2
    data_file = tmp_path / f"data_{kind}.npy"
    np.save(data_file, x)
    assert main(["fit", "--config", str(_file_recipe(tmp_path, data_file))]) == 2
    line = _error_line(capsys)
    assert str(data_file) in line
    assert {"nan": "NaN", "rank": "rank", "width": "shape"}[kind] in line
    if kind == "nan":
        assert "row 17" in line
    assert _no_training(tmp_path)


def test_condense_error_joins_nested_keys() -> None:
    message = 'Parser key "model.net":\n  Problem with given class_path \'a.B\':\n    Parser key "hidden":\n      Expected int'
    assert condense_error(message) == "model.net.hidden: Expected int"


def test_sample_subcommand_from_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "--config", str(tiny_recipe(tmp_path, max_steps=10))]) == 0
    ckpt = str(tmp_path / "run" / "checkpoints" / "last.ckpt")
    out_a, out_b, png = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "a.png"
    args = ["sample", "--ckpt", ckpt, "--config", str(ROOT / "samplers/rk4.yaml"), "--num", "64", "--seed", "5"]
    assert main([*args, "--out", str(out_a), "--plot", str(png)]) == 0
    assert main([*args, "--out", str(out_b)]) == 0
    a, b = torch.load(out_a, weights_only=True), torch.load(out_b, weights_only=True)
    assert a["x"].shape == (64, 2) and a["solver"] == "rk4" and a["steps"] == 10
    assert torch.equal(a["x"], b["x"])  # same seed, same samples
    assert png.stat().st_size > 1000
    assert main(["sample", "--ckpt", ckpt, "--solver", "euler", "--steps", "3", "--num", "8", "--out", str(out_b)]) == 0
    assert torch.load(out_b, weights_only=True)["steps"] == 3
    capsys.readouterr()
    assert main(["sample", "--ckpt", ckpt, "--solver", "nosuch", "--out", str(out_b)]) == 2
    assert "unknown solver" in _error_line(capsys)
    assert main(["sample", "--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(out_b)]) == 2
    assert "missing.ckpt" in _error_line(capsys)


def test_sample_subcommand_for_a_data_to_data_interpolant(tmp_path: Path) -> None:
    model = {
        "denoiser": {"class_path": "flowbridge.nets.MLP", "init_args": {"dim": 2, "hidden": 16, "depth": 2}},
        "path": {"class_path": "flowbridge.paths.StochasticInterpolant",
                 "init_args": {"gamma": "sqrt", "gamma_scale": 0.5, "t_min": 0.001, "t_max": 0.999}},
        "objective": {"class_path": "flowbridge.objectives.InterpolantObjective"},
    }
    data = {"class_path": "flowbridge.training.PairedToy",
            "init_args": {"source": "8gaussians", "target": "moons", "n": 640, "val_size": 100, "batch_size": 64}}
    assert main(["fit", "--config", str(tiny_recipe(tmp_path, max_steps=5, model=model, data=data))]) == 0
    out = tmp_path / "s.pt"
    ckpt = str(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert main(["sample", "--ckpt", ckpt, "--num", "32", "--solver", "euler", "--steps", "4", "--out", str(out)]) == 0
    x = torch.load(out, weights_only=True)["x"]
    assert x.shape == (32, 2) and torch.isfinite(x).all()


def test_recipes_naming_their_module_class_fit_through_flowbridge_fit(tmp_path):
    """LightSB / DSBM recipes give `model: {class_path: ...}`; `flowbridge fit` accepts them."""
    from flowbridge.cli import build_cli, names_module_class

    root = __import__("pathlib").Path(__file__).parents[1] / "models"
    assert names_module_class(["fit", "--config", str(root / "lightsb_8gaussians_to_moons.yaml")])
    assert not names_module_class(["fit", "--config", str(root / "fm_moons.yaml")])
    cli = build_cli(
        ["fit", "--config", str(root / "lightsb_8gaussians_to_moons.yaml"), "--trainer.max_steps", "2",
         "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"],
    )
    assert cli.trainer.global_step == 2
    assert type(cli.model).__name__ == "LightSBModule"


def test_sample_plot_fires_when_validation_and_plot_periods_are_equal(tmp_path):
    """check_val_every_n_epoch = SamplePlot.every_n_epochs = 2 must write a plot (epochs count from 1)."""
    import pathlib

    from flowbridge.cli import build_cli
    from flowbridge.training import SamplePlot

    recipe = pathlib.Path(__file__).parents[1] / "models" / "fm_moons.yaml"
    cli = build_cli(
        ["fit", "--config", str(recipe), "--trainer.max_steps", "-1", "--trainer.max_epochs", "2",
         "--trainer.check_val_every_n_epoch", "2", "--trainer.default_root_dir", str(tmp_path),
         "--trainer.enable_progress_bar", "false", "--trainer.limit_train_batches", "2",
         "--trainer.callbacks+=flowbridge.training.SamplePlot", "--trainer.callbacks.every_n_epochs", "2",
         "--trainer.callbacks.num_samples", "64"],
    )
    plots = [cb for cb in cli.trainer.callbacks if isinstance(cb, SamplePlot)]
    assert any(cb.last_path is not None and cb.last_path.exists() for cb in plots)


def test_cli_profiles_nothing_cheaply_unless_a_profiler_is_asked_for(tmp_path: Path) -> None:
    from lightning.pytorch.profilers import SimpleProfiler

    from flowbridge.cli import build_cli
    from flowbridge.training.profiling import NoOpProfiler

    recipe = str(tiny_recipe(tmp_path, max_steps=3))
    assert type(build_cli(["--config", recipe], run=False).trainer.profiler) is NoOpProfiler
    asked = build_cli(["--config", recipe, "--trainer.profiler", "simple"], run=False)
    assert isinstance(asked.trainer.profiler, SimpleProfiler)
    with NoOpProfiler().profile("a"), NoOpProfiler().profile("b"):  # one shared context, re-entrant
        pass


def test_help_lists_every_command_in_one_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    from flowbridge.cli import COMMANDS

    for args in ([], ["--help"], ["-h"]):
        assert main(args) == 0
        out = capsys.readouterr().out
        assert "Lightning Trainer command line tool" not in out
        for command in ("fit", "validate", "predict", "sample", "tune"):
            lines = [ln for ln in out.splitlines() if ln.strip().startswith(command + " ")]
            assert len(lines) == 1 and COMMANDS[command] in lines[0], out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("flowbridge 0.1.0 (torch ")
    assert main(["nosuch"]) == 2
    assert "unknown command 'nosuch'" in _error_line(capsys)


def test_fit_help_is_short_and_the_rest_is_one_level_down(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "--help"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) < 40 and "--trainer.max_steps" in out and "--ckpt_path" in out
    assert main(["fit", "--config", str(ROOT / "models/fm_moons.yaml"), "--help"]) == 0  # with a recipe too
    assert capsys.readouterr().out == out
    assert main(["fit", "--help", "trainer"]) == 0
    trainer = capsys.readouterr().out
    assert "--trainer.gradient_clip_val" in trainer and "--trainer.accumulate_grad_batches" in trainer
    assert main(["validate", "--help", "model", "BFNModule"]) == 0
    model = capsys.readouterr().out
    assert "--model.transform" in model and "--model.net " not in model.split("BFNModule")[0]
    assert main(["fit", "--help", "data", "ImageFolder"]) == 0
    assert "--data.image_size" in capsys.readouterr().out
    assert main(["fit", "--help", "model", "Nope"]) == 2
    assert "unknown class 'Nope'" in _error_line(capsys)
    assert main(["fit", "--help", "all"]) == 0  # Lightning's full reference
    assert len(capsys.readouterr().out.splitlines()) > 300


def test_sample_subcommand_refuses_what_a_model_cannot_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "--config", str(tiny_recipe(tmp_path, max_steps=3))]) == 0
    ckpt = str(tmp_path / "run" / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    assert main(["sample", "--ckpt", ckpt, "--label", "3", "--out", str(tmp_path / "s.pt")]) == 2
    assert "--label: GenerativeModule is unconditional" in _error_line(capsys)
    assert main(["sample", "--ckpt", ckpt, "--guidance", "2", "--out", str(tmp_path / "s.pt")]) == 2
    assert "unconditional: guidance does not apply" in _error_line(capsys)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    assert main(["sample", "--ckpt", str(tmp_path / "junk.ckpt")]) == 2
    assert "not a readable checkpoint" in _error_line(capsys)


# --------------------------------------------------------------------------------------------------
# `flowbridge sample` speaks the sampling vocabulary; every shipped preset on every recipe
# --------------------------------------------------------------------------------------------------
PRESETS = sorted(p.stem for p in (ROOT / "samplers").glob("*.yaml"))
#: What each recipe's sampling field is: a GaussianPath field ("gaussian"), a BFN, a stochastic
#: interpolant's drift ("interpolant"), or a Schrödinger-bridge SDE drift ("sb_drift").
RECIPE_KINDS = {
    "bfn_continuous_8gaussians": "bfn", "bfn_discrete_binarized_digits": "bfn", "bfn_discrete_text": "bfn",
    "bfn_discretized_digits": "bfn", "ddpm_digits": "gaussian", "edm_digits": "gaussian", "fm_moons": "gaussian",
    "otcfm_8gaussians": "gaussian", "interpolant_8gaussians_to_moons": "interpolant", "sbcfm_8gaussians_to_moons": "interpolant",
    "lightsb_8gaussians_to_moons": "sb_drift", "dsbm_gaussian": "sb_drift",
}
#: One recipe of each kind (and the class-conditional one) in the default suite; the rest with -m slow.
FAST_RECIPES = {"fm_moons", "ddpm_digits", "bfn_continuous_8gaussians", "interpolant_8gaussians_to_moons", "lightsb_8gaussians_to_moons"}
#: Grids defined by a Gaussian schedule's log-SNR / noise level (a StochasticInterpolant has none).
SCHEDULE_GRIDS = {"logsnr", "karras"}


def _preset(name: str) -> dict:
    return yaml.safe_load((ROOT / "samplers" / f"{name}.yaml").read_text())["model"]["sampler"]


def expected_refusal(preset: str, recipe: str) -> tuple[str, ...]:
    """The one-line refusals allowed for ``preset`` on ``recipe`` (empty: it must run).

    A preset needs a Gaussian path when its grid is a schedule's or its solver needs one; a
    Schrödinger-bridge drift runs only under ``bridge_euler_maruyama`` (no shipped preset uses it).
    """
    from flowbridge.samplers import get_solver

    sampler = _preset(preset)
    kind = RECIPE_KINDS[recipe]
    gaussian_only = sampler.get("grid") in SCHEDULE_GRIDS or get_solver(sampler["solver"]).needs_gaussian_path
    reasons: tuple[str, ...] = ()
    if kind in ("interpolant", "sb_drift") and gaussian_only:
        reasons += ("needs a Gaussian schedule", "needs a field on a GaussianPath")
    if kind == "sb_drift":
        reasons += ("sample it with solver='bridge_euler_maruyama'",)
    return reasons


@pytest.fixture(scope="session")
def recipe_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """``recipe -> last.ckpt`` after 2 training steps, fitted once per session on first use."""
    done: dict[str, Path] = {}

    def get(recipe: str) -> Path:
        if recipe not in done:
            root = tmp_path_factory.mktemp(recipe)
            args = ["fit", "--config", str(ROOT / "models" / f"{recipe}.yaml"), f"--trainer.default_root_dir={root}",
                    "--threads=1", "--trainer.accelerator=cpu", "--trainer.max_steps=2", "--trainer.limit_val_batches=0",
                    "--trainer.logger=false"]
            assert main(args) == 0, recipe
            done[recipe] = root / "checkpoints" / "last.ckpt"
        return done[recipe]

    return get


def test_every_recipe_has_a_kind() -> None:
    assert set(RECIPE_KINDS) == {p.stem for p in (ROOT / "models").glob("*.yaml")} and FAST_RECIPES <= set(RECIPE_KINDS)


@pytest.mark.parametrize("recipe", [pytest.param(r, marks=() if r in FAST_RECIPES else pytest.mark.slow) for r in sorted(RECIPE_KINDS)])
def test_every_preset_runs_on_every_recipe_or_refuses_in_one_line(
    recipe: str, recipe_checkpoint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each shipped preset × each recipe: samples (exit 0, finite) where the preset supports the recipe's
    path, otherwise exactly one stderr line ``flowbridge: error: ...`` naming why, exit status 2."""
    from flowbridge.samplers import get_solver

    ckpt = str(recipe_checkpoint(recipe))
    capsys.readouterr()
    failures = []
    for preset in PRESETS:
        steps = max(2, get_solver(_preset(preset)["solver"]).min_steps)
        out = tmp_path / f"{preset}.pt"
        code = main(["sample", "--ckpt", ckpt, "--config", str(ROOT / "samplers" / f"{preset}.yaml"), "--num", "4",
                     "--steps", str(steps), "--out", str(out), "--device", "cpu"])
        err = capsys.readouterr().err.strip().splitlines()
        reasons = expected_refusal(preset, recipe)
        if not reasons:
            x = torch.load(out, weights_only=True)["x"] if code == 0 else None
            if code != 0 or err or x.shape[0] != 4 or not torch.isfinite(x).all():
                failures.append(f"{preset}: should run; exit {code}, stderr {err[-3:]}")
        elif code != 2 or len(err) != 1 or not err[0].startswith("flowbridge: error: ") or not any(r in err[0] for r in reasons):
            failures.append(f"{preset}: should refuse in one line ({' | '.join(reasons)}); exit {code}, stderr {err[-3:]}")
    assert not failures, "\n".join(failures)


def _sample(ckpt: Path, out: Path, *extra: str) -> torch.Tensor:
    assert main(["sample", "--ckpt", str(ckpt), "--num", "8", "--steps", "4", "--out", str(out), "--device", "cpu", *extra]) == 0
    return torch.load(out, weights_only=True)["x"]


def test_sample_seed_reproduces_the_file_and_is_independent_of_batch_size(recipe_checkpoint, tmp_path: Path) -> None:
    ckpt = recipe_checkpoint("fm_moons")
    for solver in ("heun", "euler_maruyama"):  # noise in x0 only / at every step
        a = _sample(ckpt, tmp_path / "a.pt", "--solver", solver, "--seed", "3")
        first = (tmp_path / "a.pt").read_bytes()
        b = _sample(ckpt, tmp_path / "a.pt", "--solver", solver, "--seed", "3")
        assert (tmp_path / "a.pt").read_bytes() == first, solver  # the same file, byte for byte
        chunked = _sample(ckpt, tmp_path / "c.pt", "--solver", solver, "--seed", "3", "--batch_size", "3")
        # sample i depends on (seed, i) only (up to the network's float roundoff at another batch shape)
        assert torch.allclose(a, chunked, rtol=1e-5, atol=1e-5), (solver, float((a - chunked).abs().max()))
        other = _sample(ckpt, tmp_path / "d.pt", "--solver", solver, "--seed", "4")
        assert not torch.isclose(a, other).any(), solver
        assert torch.equal(a, b)
    # torchsde draws one Brownian path for the batch: --seed seeds one stream, still reproducible.
    a = _sample(ckpt, tmp_path / "a.pt", "--config", str(ROOT / "samplers" / "torchsde_euler.yaml"), "--seed", "3")
    assert torch.equal(a, _sample(ckpt, tmp_path / "b.pt", "--config", str(ROOT / "samplers" / "torchsde_euler.yaml"), "--seed", "3"))


def test_sample_grid_and_t_span_reach_the_solver(recipe_checkpoint, tmp_path: Path) -> None:
    ckpt = recipe_checkpoint("fm_moons")
    base = _sample(ckpt, tmp_path / "a.pt", "--solver", "euler")
    quadratic = _sample(ckpt, tmp_path / "b.pt", "--solver", "euler", "--grid", "quadratic")
    saved = torch.load(tmp_path / "b.pt", weights_only=True)
    assert saved["grid"] == "quadratic" and saved["t_span"] is None and not torch.allclose(base, quadratic)
    spaced = _sample(ckpt, tmp_path / "c.pt", "--solver", "euler", "--t_span", "0", "0.5")
    assert torch.load(tmp_path / "c.pt", weights_only=True)["t_span"] == [0.0, 0.5]
    assert torch.equal(spaced, _sample(ckpt, tmp_path / "d.pt", "--solver", "euler", "--t_span=0,0.5"))
    assert not torch.allclose(base, spaced)


def test_sample_options_merge_over_the_preset(recipe_checkpoint, tmp_path: Path) -> None:
    ckpt = recipe_checkpoint("fm_moons")
    preset = tmp_path / "p.yaml"
    preset.write_text("model:\n  sampler:\n    solver: dpmpp_3m\n    steps: 4\n    grid: logsnr\n"
                      "    options:\n      variant: lu\n      final_step: solver\n")
    plain = _sample(ckpt, tmp_path / "a.pt", "--config", str(preset))
    # Same value for one option: the other (variant: lu) must survive the merge.
    assert torch.equal(plain, _sample(ckpt, tmp_path / "b.pt", "--config", str(preset), "--option", "final_step=solver"))
    taylor = _sample(ckpt, tmp_path / "c.pt", "--config", str(preset), "--option", "variant=taylor")
    assert not torch.allclose(plain, taylor)  # the option reached the solver
    # A different --solver starts from its own options (the preset's belong to dpmpp_3m).
    assert _sample(ckpt, tmp_path / "d.pt", "--config", str(preset), "--solver", "euler").shape == (8, 2)
    # YAML scalars: 1e-3 (no dot) is a number, not the string YAML 1.1 would make of it.
    assert _sample(ckpt, tmp_path / "e.pt", "--solver", "dopri5", "--option", "rtol=1e-3", "--option", "atol=1e-3").shape == (8, 2)


@pytest.mark.parametrize("args,flag", [
    (["--t_span", "0.5"], "--t_span"), (["--t_span", "0.9", "0.1"], "--t_span"), (["--t_span", "a", "b"], "--t_span"),
    (["--t_span=0,0.5,1"], "--t_span"), (["--t_span", "0", "2"], "--t_span"),
    (["--grid", "nosuch"], "--grid"), (["--batch_size", "0"], "--batch_size"), (["--batch_size", "x"], "--batch_size"),
    (["--seed", "abc"], "--seed"), (["--steps", "0"], "--steps"), (["--guidance", "nan"], "--guidance"),
    (["--option", "noequals"], "--option"), (["--option", "steps=3"], "--option steps"), (["--option", "seed=3"], "--option seed"),
    (["--option", "bogus=1"], "--option"), (["--option", "noise_scale=[1, 2]", "--solver", "euler_maruyama"], "--option noise_scale"),
    (["--option", "noise_scale=-1", "--solver", "euler_maruyama"], "--option"),
])
def test_sample_bad_flags_fail_in_one_line_naming_the_flag(
    args: list[str], flag: str, recipe_checkpoint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = recipe_checkpoint("fm_moons")
    capsys.readouterr()
    code = main(["sample", "--ckpt", str(ckpt), "--num", "4", "--solver", "euler", *args, "--out", str(tmp_path / "s.pt")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("flowbridge: error: ") and flag in err[0], err
    assert not (tmp_path / "s.pt").exists()


# --------------------------------------------------------------------------------------------------
# tuned presets: flowbridge tune, and flowbridge sample --config tuned.yaml
# --------------------------------------------------------------------------------------------------
def _tune(ckpt: Path, out: Path, *extra: str) -> int:
    return main(["tune", "--ckpt", str(ckpt), "--nfe", "5", "--num", "32", "--max_iters", "3", "--out", str(out),
                 "--device", "cpu", *extra])


def test_tune_writes_a_preset_that_sample_uses_as_fb_sample_does(
    recipe_checkpoint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import flowbridge as fb
    from flowbridge.samplers.tuning import TunedSolver

    ckpt = recipe_checkpoint("fm_moons")
    capsys.readouterr()
    preset = tmp_path / "tuned.yaml"
    assert _tune(ckpt, preset) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "tuned plms at NFE 5" in out[0] and " -> " in out[0] and str(preset) in out[0], out
    tuned = TunedSolver.load(preset)
    assert tuned.solver == "plms" and tuned.steps == 5 and tuned.grid.dtype == torch.float64
    assert len(tuned.options["weight_multipliers"]) == 5
    x = _sample(ckpt, tmp_path / "s.pt", "--config", str(preset), "--seed", "3", "--steps", "5")
    saved = torch.load(tmp_path / "s.pt", weights_only=True)
    assert saved["solver"] == "plms" and saved["grid"] == tuned.grid.tolist()
    # The same samples as flowbridge.sample with the tuned solver on the checkpoint's field (float32 states).
    module = fb.load(ckpt, "cpu")
    with torch.no_grad():
        expected = fb.sample(module.field(), tuned, shape=(8, 2), seed=3, dtype=module.dtype).x
    assert torch.equal(x, expected)
    # A steps other than the preset's, with its explicit times, is refused in one line.
    assert main(["sample", "--ckpt", str(ckpt), "--config", str(preset), "--steps", "4", "--out", str(tmp_path / "b.pt")]) == 2
    assert "len(grid) - 1 = 5" in _error_line(capsys)


def test_tuned_and_plain_presets_are_read_by_one_reader(tmp_path: Path) -> None:
    from flowbridge.cli import read_sampler_preset
    from flowbridge.samplers.presets import load_preset
    from flowbridge.samplers.tuning import TunedSolver
    from flowbridge.training import SamplerConfig

    grid = torch.tensor([0.05, 0.1 + 0.2, 0.7, 1 - 2**-53], dtype=torch.float64)
    tuned = TunedSolver("dpmpp_2m", 3, grid, {"weight_multipliers": [[1.0], [1e-05, 0.9], [1.1, -0.0]]})
    path = tmp_path / "tuned.yaml"
    tuned.save(path)
    cfg = read_sampler_preset(path, SamplerConfig())
    assert cfg.solver == "dpmpp_2m" and cfg.steps == 3 and cfg.options == dict(tuned.options)
    assert torch.equal(torch.tensor(cfg.grid, dtype=torch.float64).view(torch.int64), grid.view(torch.int64))
    assert load_preset(path)["grid"] == grid.tolist()
    for preset in sorted((ROOT / "samplers").glob("*.yaml")):  # every shipped preset through the same reader
        section = load_preset(preset)
        assert read_sampler_preset(preset) == SamplerConfig(**section)


@pytest.mark.parametrize("args,flag", [
    (["--nfe", "0"], "--nfe"), (["--nfe", "x"], "--nfe"), (["--solver", "heun"], "--solver"), (["--grid", "nosuch"], "--grid"),
    (["--option", "order=9"], "--option"), (["--num_val", "1"], "--num_val"), (["--max_iters", "-1"], "--max_iters"),
    (["--num", "0"], "--num"), (["--lr", "0"], "--lr"), (["--reference", "euler_maruyama"], "--reference"),
    (["--reference_steps", "0"], "--reference_steps"), (["--validate_every", "0"], "--validate_every"), (["--solver", "dpmpp_3m", "--nfe", "2"], "nfe must be >= 3"),
])
def test_tune_bad_flags_fail_in_one_line(
    args: list[str], flag: str, recipe_checkpoint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = recipe_checkpoint("fm_moons")
    capsys.readouterr()
    out = tmp_path / "t.yaml"
    assert main(["tune", "--ckpt", str(ckpt), "--max_iters", "1", "--num", "8", "--out", str(out), "--device", "cpu", *args]) == 2
    assert flag in _error_line(capsys)
    assert not out.exists()


def test_tune_refuses_a_missing_checkpoint_and_a_bad_preset_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", "--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "t.yaml")]) == 2
    assert "missing.ckpt" in _error_line(capsys)
    assert main(["tune", "--out", str(tmp_path / "t.yaml")]) == 2
    assert "--ckpt" in _error_line(capsys)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  sampler: {solver: plms, steps: 3, grid: [0.1, 0.5, 0.3, 0.9]}\n")
    from flowbridge.cli import read_sampler_preset

    with pytest.raises(ConfigError, match="bad.yaml.*strictly increasing"):
        read_sampler_preset(bad)
