"""Training one cell: the cell end to end, the epoch loop, its checkpoint, the recipe (schedules, augmentation, EMA), calibration and the device.

``TrainCallback`` is part of the public seams (``bench.seams``); it is re-exported here lazily so that
importing a torch-free submodule of this package does not import torch.
"""

from __future__ import annotations


def __getattr__(name: str):
    if name == "TrainCallback":
        from bench.train.loop import TrainCallback

        return TrainCallback
    raise AttributeError(f"module 'bench.train' has no attribute {name!r}")


__all__ = ["TrainCallback"]
