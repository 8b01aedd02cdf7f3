"""hma.sampling: frame-by-frame generation with a world model (MaskGIT for token ids, MAR for
latents), with or without the model's temporal KV cache, and the ``hma bench`` measurements."""

from hma.sampling.engine import CacheMode, Engine, rollout
from hma.sampling.generators import FrameGenerator, frame_generator
from hma.sampling.mar import MARSampling
from hma.sampling.maskgit import MaskGITSampling, UnmaskOrder

__all__ = ["CacheMode", "Engine", "FrameGenerator", "MARSampling", "MaskGITSampling", "UnmaskOrder", "frame_generator",
           "rollout"]
