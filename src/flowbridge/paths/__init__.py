"""Probability paths: schedules, Gaussian paths and stochastic interpolants."""

from flowbridge.paths.gaussian import PARAMETRISATIONS, GaussianPath, Parametrisation, PathSample
from flowbridge.paths.interpolant import (
    BrownianBridge,
    InterpolantCoefficients,
    InterpolantSample,
    StochasticInterpolant,
)
from flowbridge.paths.schedules import (
    SCHEDULES,
    LinearSchedule,
    Schedule,
    ScheduleValues,
    TrigSchedule,
    VESchedule,
    VPSchedule,
    get_schedule,
    register_schedule,
)

__all__ = [
    "PARAMETRISATIONS",
    "SCHEDULES",
    "BrownianBridge",
    "GaussianPath",
    "InterpolantCoefficients",
    "InterpolantSample",
    "LinearSchedule",
    "Parametrisation",
    "PathSample",
    "Schedule",
    "ScheduleValues",
    "StochasticInterpolant",
    "TrigSchedule",
    "VESchedule",
    "VPSchedule",
    "get_schedule",
    "register_schedule",
]
