"""Schrödinger bridges: LightSB (closed form), SB-CFM and DSBM/IMF (learned), and their SDE sampler.

Convention: source at ``t = 0``, target at ``t = 1``, Brownian reference of variance ``eps``
(``eps = sigma**2`` for the bridge-noise parametrisation of SB-CFM and DSBM). Every method exposes
its forward SDE ``dX = b(X, t) dt + sqrt(eps) dW`` as a :class:`BridgeField`, sampled by
``flowbridge.sample(field, "bridge_euler_maruyama", steps, x0=...)``.
"""

from typing import Any

from flowbridge.bridges.dsbm import DSBM, DSBMHistory, bridge_matching_loss
from flowbridge.bridges.lightsb import ConditionalMixture, FitHistory, LightSB, LightSBField
from flowbridge.bridges.sde import BridgeEulerMaruyama, BridgeField, DriftNetworkField

# SB-CFM needs POT (and through it scikit-learn and SciPy, seconds to import); it is loaded on first
# use so that ``import flowbridge`` (which reaches this package through flowbridge.analytic) stays light.
_LAZY = {"SBCFM": "sbcfm", "SBCFMBridgeField": "sbcfm", "LogSinkhornCoupling": "coupling"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"flowbridge.bridges.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'flowbridge.bridges' has no attribute {name!r}")

__all__ = [
    "DSBM",
    "SBCFM",
    "BridgeEulerMaruyama",
    "BridgeField",
    "ConditionalMixture",
    "DSBMHistory",
    "DriftNetworkField",
    "FitHistory",
    "LightSB",
    "LightSBField",
    "LogSinkhornCoupling",
    "SBCFMBridgeField",
    "bridge_matching_loss",
]
