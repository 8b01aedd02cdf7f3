"""hma.model: the spatial-temporal world model, its embodiment stems/heads and KV cache."""

from hma.model.cache import KVCache, Slide
from hma.model.world_model import WorldModel, WorldModelOutput

__all__ = ["KVCache", "Slide", "WorldModel", "WorldModelOutput"]
