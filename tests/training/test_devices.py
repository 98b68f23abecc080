"""Pre-flight checks run where the module runs (the GPU bug of issue 17, caught on the CPU).

Lightning points a module's ``device`` at the strategy's root device in ``setup``, *before* it moves
the parameters; a check that sent data to ``self.device`` there met a net still on the CPU ("mat1 is
on cuda:0, different from other tensors on cpu"). Here a test-double strategy whose root device is
``meta`` plays the GPU: every module type must reach ``on_fit_start`` with its parameters on
``meta`` and its data checks passed, and a check handed a net on another device than its data
must run on the net's device.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.strategies import SingleDeviceStrategy

from tests.training.test_trainer_features import MODULES


class MetaAccelerator(CPUAccelerator):
    """A CPU accelerator that accepts the ``meta`` device (a stand-in for an accelerator)."""

    def setup_device(self, device: torch.device) -> None:
        pass


class MetaStrategy(SingleDeviceStrategy):
    """Single-device strategy on ``meta``; tears down without copying meta tensors back."""

    def teardown(self) -> None:
        pass


class Reached(Exception):
    """Raised by the probe once the module's own ``on_fit_start`` (the pre-flight check) has passed."""


def _probe(module: pl.LightningModule) -> pl.LightningModule:
    base = type(module)

    def on_fit_start(self: Any) -> None:
        base.on_fit_start(self)
        raise Reached(next(self.parameters()).device)

    module.__class__ = type(f"Probe{base.__name__}", (base,), {"on_fit_start": on_fit_start})
    return module


# The BFN losses validate their data with a host read (``bool(isfinite(x).all())``), which a meta
# tensor cannot answer; the BFN module's check sends its data to the parameters' device like the others.
ON_META = sorted(set(MODULES) - {"bfn"})


@pytest.mark.parametrize("name", ON_META)
def test_preflight_checks_pass_on_a_strategy_that_moves_the_module_to_meta(name: str) -> None:
    module, data = MODULES[name]()
    module = _probe(module)
    strategy = MetaStrategy(device=torch.device("meta"), accelerator=MetaAccelerator())
    trainer = pl.Trainer(strategy=strategy, max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, num_sanity_val_steps=0)
    with pytest.raises(Reached) as reached:
        trainer.fit(module, datamodule=data)
    assert reached.value.args[0] == torch.device("meta")


def test_a_net_on_another_device_than_the_data_is_checked_on_the_nets_device() -> None:
    from flowbridge.training.data import DataError

    module, data = MODULES["flow_matching"]()
    data.setup("fit")
    module.to("meta")  # the data stay on the CPU
    module.check_data(data)  # runs on meta: no device mismatch
    wide, _ = MODULES["flow_matching"]()
    wide.net = torch.nn.Linear(3, 3).to("meta")  # a net that does not fit the data is still refused there
    with pytest.raises(DataError, match="does not accept samples of shape"):
        wide.check_data(data)
