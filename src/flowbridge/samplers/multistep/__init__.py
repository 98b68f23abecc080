"""Multistep and exponential-integrator solvers for Gaussian paths, with momentum variants.

Registered names: ``ddim``, ``dpmpp_2m``, ``dpmpp_3m``, ``unipc``, ``plms``, ``deis``, ``plms_hb``,
``plms_nesterov``, ``dpmpp_2m_hb``, ``ghvb``. All need a field on a
:class:`~flowbridge.paths.GaussianPath`; see :mod:`.common` for the variables, the final-step and
warm-up options and what happens where :math:`\\alpha = 0` or :math:`\\sigma = 0`.
"""

from flowbridge.samplers.multistep import ddim, deis, dpmpp, ghvb, heavy_ball, plms, unipc  # noqa: F401  (registers the solvers)
from flowbridge.samplers.multistep.common import FINAL_STEPS, GaussianGrid, GaussianMultistep, MultistepState, StepPlan

__all__ = ["FINAL_STEPS", "GaussianGrid", "GaussianMultistep", "MultistepState", "StepPlan"]
