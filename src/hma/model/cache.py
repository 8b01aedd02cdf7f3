"""Key/value cache for frame-by-frame generation.

Temporal attention is causal over frames, so a committed (finished) frame's temporal
keys/values at every block never change while later frames are generated: they are
computed once, in :meth:`WorldModel.commit_frame`, and every unmasking step of the next
frame runs only that frame's tokens (:meth:`WorldModel.forward_frame`). Spatial attention
stays inside one frame and needs no cache.

Temporal positions are relative (a learned bias per frame distance), so a cached key is
valid at any slot. When a full cache slides (lazily, when a frame is run against it), there
are two ways to drop the oldest frame, see :class:`Slide`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from torch import Tensor


class Slide(str, enum.Enum):
    """What happens to the kept frames when the window slides past ``max_frames``.

    ``exact``: the kept frames are re-encoded from their stored input embeddings (the new
    first frame with the "no action" embedding), so every later output equals the
    uncached window over the same last frames; costs one (max_frames-1)-frame pass per slide.
    ``evict``: the oldest frame's keys/values are dropped and the rest kept as they are (one
    memory shift, no compute). The kept frames' deeper-layer keys still carry what they saw
    of the dropped frame, so outputs differ slightly from the uncached window (a
    Transformer-XL-style longer memory); it is the fast choice for long rollouts.
    """

    EXACT = "exact"
    EVICT = "evict"


@dataclass
class KVCache:
    """Per-block temporal keys/values of the frames committed so far (oldest first)."""

    keys: list[Tensor]  # per block (B*S, H, max_frames, Dh), S = tokens per frame incl. action token
    values: list[Tensor]  # per block, same shape
    token_emb: Tensor  # (B, max_frames, S_grid, D) embedded frame tokens, for re-encoding after a slide
    action_emb: Tensor  # (B, max_frames, D) each committed frame's action embedding (slot 0: no action)
    slide: Slide = Slide.EXACT
    length: int = 0  # committed frames

    @property
    def max_frames(self) -> int:
        return self.action_emb.shape[1]

    @property
    def batch_size(self) -> int:
        return self.action_emb.shape[0]
