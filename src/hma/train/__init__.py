"""hma.train: the one training stack (TrainState, Budget, fit, checkpoints) and the world model's
training loop (single process or torchrun/DDP); the tokenizer's is :mod:`hma.train.tokenizer`."""

from hma.train.fit import TrainLog, fit
from hma.train.loop import TrainConfig, evaluate, train
from hma.train.state import Budget, TrainState

__all__ = ["Budget", "TrainConfig", "TrainLog", "TrainState", "evaluate", "fit", "train"]
