"""Training from config: the LightningModule, DataModules, callbacks and time samplers."""

from flowbridge.training.callbacks import SampleMetrics, SamplePlot
from flowbridge.training.data import (
    DataError,
    Digits,
    GenerativeDataModule,
    Mixture,
    PairedToy,
    TensorFile,
    Toy2D,
)
from flowbridge.training.module import GenerativeModule, SamplerConfig
from flowbridge.training.streams import BatchStream, DataBatch, PredictBatch
from flowbridge.training.time_samplers import LogitNormalTime, LogNormalNoiseTime, TimeSampler, UniformTime
from flowbridge.training.toy2d import TOY2D, sample_toy2d

__all__ = [
    "TOY2D",
    "BatchStream",
    "DataBatch",
    "DataError",
    "Digits",
    "GenerativeDataModule",
    "GenerativeModule",
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
