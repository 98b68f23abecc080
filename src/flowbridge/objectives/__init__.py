"""Training objectives: flow matching, denoising score matching, stochastic interpolants."""

from flowbridge.objectives.base import Objective, ObjectiveOutput
from flowbridge.objectives.flow_matching import FlowMatching
from flowbridge.objectives.interpolant import InterpolantObjective
from flowbridge.objectives.score_matching import DenoisingScoreMatching

__all__ = ["DenoisingScoreMatching", "FlowMatching", "InterpolantObjective", "Objective", "ObjectiveOutput"]
