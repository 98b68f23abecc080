"""Fields: a network (or closed form) plus its parametrisation, as consumed by every sampler."""

from flowbridge.fields.base import Field, same_path
from flowbridge.fields.clipping import ClippedField
from flowbridge.fields.guidance import AutoGuidanceField, CFGField, GuidedField
from flowbridge.fields.interpolant import InterpolantField
from flowbridge.fields.network import NetworkField
from flowbridge.fields.wrappers import AutocastField, CompiledField

__all__ = ["AutocastField", "ClippedField", "CompiledField", "AutoGuidanceField", "CFGField", "Field", "GuidedField", "InterpolantField", "NetworkField", "same_path"]
