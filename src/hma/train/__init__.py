"""hma.train: the training loop (single process or torchrun/DDP), optimizer and checkpoints."""

from hma.train.loop import TrainConfig, evaluate, train

__all__ = ["TrainConfig", "evaluate", "train"]
