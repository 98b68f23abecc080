"""Training from config: the LightningModules, DataModules, callbacks, schedules and time samplers."""

from flowbridge.training.base import FlowbridgeModule, SamplerConfig
from flowbridge.training.callbacks import SampleMetrics, SamplePlot
from flowbridge.training.data import (
    DataError,
    Digits,
    GenerativeDataModule,
    ImageFolder,
    Mixture,
    PairedToy,
    TensorFile,
    Toy2D,
)
from flowbridge.training.ema import EMA
from flowbridge.training.module import GenerativeModule
from flowbridge.training.schedules import CosineLR
from flowbridge.training.streams import BatchStream, DataBatch, PredictBatch
from flowbridge.training.time_samplers import (
    LogitNormalTime,
    LogNormalNoiseTime,
    TimeSampler,
    UniformTime,
)
from flowbridge.training.toy2d import TOY2D, sample_toy2d

__all__ = [
    "EMA",
    "TOY2D",
    "BatchStream",
    "CosineLR",
    "DataBatch",
    "DataError",
    "Digits",
    "FlowbridgeModule",
    "GenerativeDataModule",
    "GenerativeModule",
    "ImageFolder",
    "LogNormalNoiseTime",
    "LogitNormalTime",
    "Mixture",
    "PairedToy",
    "PredictBatch",
    "SampleMetrics",
    "SamplePlot",
    "SamplerConfig",
    "TensorFile",
    "TimeSampler",
    "Toy2D",
    "UniformTime",
    "sample_toy2d",
]
