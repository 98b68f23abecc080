r"""diffusers denoisers as flowbridge fields.

``from_diffusers(unet, scheduler)`` reads the scheduler's training noise table and prediction type
and returns a :class:`~flowbridge.fields.Field` on a continuous-time Gaussian path:

* beta-based schedulers (DDPM, DDIM, PNDM, DPM-Solver(++), UniPC, Euler, Heun, LMS, DEIS, ...):
  VP path of :class:`~flowbridge.interop.discrete.DiscreteVPSchedule` over ``alphas_cumprod``; the
  network is called with ``x_t`` in VP scaling and the timestep :math:`(1-t)(N-1)`;
* ``FlowMatchEulerDiscreteScheduler``: the linear path with :math:`t = 1 - \sigma`; the network is
  called with timestep :math:`\sigma N` (their convention) and its output :math:`v = \epsilon - x_1`
  is minus flowbridge's velocity.

Prediction types: ``epsilon`` (noise), ``sample`` (data), ``v_prediction``
(:math:`v = \alpha\epsilon - \sigma x_1`, so :math:`\hat x_1 = \alpha x - \sigma v` on a VP path),
``flow``. Nothing is downloaded: a scheduler is given as an object, a config dict, or a local
directory (``local_files_only``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from flowbridge._utils import as_time
from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field
from flowbridge.interop.discrete import DiscreteVPSchedule
from flowbridge.paths.gaussian import GaussianPath

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction", "flow")
VP_SCHEDULERS = (
    "DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler", "DPMSolverSDEScheduler", "UniPCMultistepScheduler",
    "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler",
    "LMSDiscreteScheduler", "DEISMultistepScheduler", "KDPM2DiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler", "TCDScheduler", "LCMScheduler", "DDIMInverseScheduler",
)
FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler")
SUPPORTED_SCHEDULERS = VP_SCHEDULERS + FLOW_SCHEDULERS


def _load_scheduler(scheduler_or_config: Any) -> Any:
    try:
        import diffusers
    except ImportError:
        raise ImportError(
            "flowbridge.interop.from_diffusers needs the optional 'diffusers' package: pip install 'flowbridge[diffusers]'"
        ) from None

    if isinstance(scheduler_or_config, (str, Path)):
        path = Path(scheduler_or_config)
        if path.is_dir():
            path = path / "scheduler_config.json"
        if not path.exists():
            raise FileNotFoundError(f"scheduler config {path} does not exist (flowbridge never downloads)")
        return _load_scheduler(json.loads(path.read_text()))
    if isinstance(scheduler_or_config, Mapping):
        name = scheduler_or_config.get("_class_name")
        if name is None:
            raise ArgumentError("a scheduler config needs its '_class_name' (as saved by diffusers)")
        if name not in SUPPORTED_SCHEDULERS or not hasattr(diffusers, name):
            raise ArgumentError(f"unsupported scheduler {name!r}; supported schedulers: {', '.join(SUPPORTED_SCHEDULERS)}")
        return getattr(diffusers, name).from_config(dict(scheduler_or_config))
    return scheduler_or_config


class DiffusersField(Field):
    """A diffusers denoiser (e.g. ``UNet2DModel``) as a field; see :func:`from_diffusers`."""

    def __init__(
        self, unet: nn.Module, path: GaussianPath, prediction_type: str, kind: str, num_train_timesteps: int,
        condition: dict[str, Any] | None = None,
    ) -> None:
        native = {"epsilon": "noise", "sample": "data", "v_prediction": "data", "flow": "velocity"}[prediction_type]
        super().__init__(path, native)
        self.unet = unet
        self.prediction_type, self.kind = prediction_type, kind
        self.num_train_timesteps = num_train_timesteps
        self.condition = dict(condition or {})

    def model_timestep(self, t: Tensor) -> Tensor:
        """The timestep the wrapped network is called with at flowbridge time ``t``."""
        if self.kind == "flow":
            return (1 - t) * self.num_train_timesteps
        schedule = self.gaussian_path.schedule
        assert isinstance(schedule, DiscreteVPSchedule)
        return schedule.timestep(t)

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        t = as_time(t, x)
        t_batch = t.expand(x.shape[0]) if t.ndim == 0 else t
        out = self.unet(x, self.model_timestep(t_batch), **self.condition)
        out = getattr(out, "sample", out)
        if self.prediction_type == "v_prediction":
            c = self.gaussian_path.coefficients(t, x)
            return c.alpha * x - c.sigma * out
        if self.prediction_type == "flow":
            return -out
        return out

    def with_condition(self, **condition: Any) -> "DiffusersField":
        return DiffusersField(self.unet, self.gaussian_path, self.prediction_type, self.kind,
                              self.num_train_timesteps, {**self.condition, **condition})


def from_diffusers(
    unet: nn.Module, scheduler_or_config: Any, *, prediction_type: str | None = None, condition: dict[str, Any] | None = None
) -> DiffusersField:
    """Wraps a diffusers denoiser as a flowbridge field.

    Args:
        unet: a module called as ``unet(x, timestep, **condition)`` returning a tensor or an object
            with ``.sample`` (e.g. ``diffusers.UNet2DModel``).
        scheduler_or_config: a diffusers scheduler, its config dict, or a local directory holding
            ``scheduler_config.json``.
        prediction_type: override the scheduler's ``prediction_type``.
        condition: keyword arguments passed to every call (``class_labels=...``,
            ``encoder_hidden_states=...``).

    Raises:
        ValueError: an unsupported scheduler or prediction type (the message lists the supported ones).
    """
    scheduler = _load_scheduler(scheduler_or_config)
    name = type(scheduler).__name__
    if name not in SUPPORTED_SCHEDULERS:
        raise ArgumentError(f"unsupported scheduler {name!r}; supported schedulers: {', '.join(SUPPORTED_SCHEDULERS)}")
    config = scheduler.config
    n = int(config.num_train_timesteps)
    if name in FLOW_SCHEDULERS:
        pred = prediction_type or "flow"
        if pred != "flow":
            raise ArgumentError(f"{name} models predict 'flow'; got prediction_type={pred!r}")
        if getattr(config, "shift", 1.0) != 1.0 or getattr(config, "use_dynamic_shifting", False):
            # The shift only reparametrises the sampling grid; the network's timestep is still sigma*N.
            pass
        return DiffusersField(unet, GaussianPath("linear"), "flow", "flow", n, condition)
    pred = prediction_type or getattr(config, "prediction_type", "epsilon")
    if pred not in PREDICTION_TYPES or pred == "flow":
        raise ArgumentError(f"unsupported prediction_type {pred!r} for {name}; supported: epsilon, sample, v_prediction")
    table = scheduler.alphas_cumprod.double()
    path = GaussianPath(DiscreteVPSchedule(alphas_cumprod=tuple(float(a) for a in table)))
    return DiffusersField(unet, path, pred, "vp", n, condition)
