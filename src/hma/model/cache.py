"""Key/value cache for frame-by-frame generation.

Temporal attention is causal over frames, so a committed (finished) frame's temporal
keys/values at every block never change while later frames are generated: they are
computed once, in :meth:`WorldModel.commit_frame`, and every unmasking step of the next
frame runs only that frame's tokens (:meth:`WorldModel.forward_frame`). Spatial attention
stays inside one frame and needs no cache.

Temporal positions are relative (a learned bias per frame distance), so a cached key is
valid at any slot. When a full cache slides (lazily, when a frame is run against it), there
are two ways to drop the oldest frame, see :class:`Slide`. With ``Slide.EVICT`` the key/value
buffers are a ring: the new frame takes the slot of the frame it evicts and nothing is moved;
``slots`` lists the kept frames' slots oldest first, and the attention bias is looked up by
each slot's frame distance.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from torch import Tensor


class Slide(str, enum.Enum):
    """What happens to the kept frames when the window slides past ``max_frames``.

    ``exact``: the kept frames are re-encoded from their stored input embeddings (the new
    first frame with the "no action" embedding), so every later output equals the
    uncached window over the same last frames; costs one (max_frames-1)-frame pass per slide.
    ``evict``: the oldest frame's keys/values are dropped and the rest kept as they are (its
    slot is reused by the next frame: no compute, no copy). The kept frames' deeper-layer
    keys still carry what they saw of the dropped frame, so outputs differ slightly from the
    uncached window (a Transformer-XL-style longer memory); it is the fast choice for long
    rollouts.
    """

    EXACT = "exact"
    EVICT = "evict"


@dataclass
class KVCache:
    """Per-block temporal keys/values of the frames committed so far (oldest first)."""

    keys: list[Tensor]  # per block (B*S, H, max_frames, Dh), S = tokens per frame incl. action token
    values: list[Tensor]  # per block, same shape
    token_emb: Tensor  # (B, max_frames, S_grid, D) embedded frame tokens, for re-encoding after an exact slide
    action_emb: Tensor  # (B, max_frames, D) each committed frame's action embedding (slot 0: no action)
    slide: Slide = Slide.EXACT
    slots: list[int] = field(default_factory=list)  # buffer slot of each kept frame, oldest first

    @property
    def length(self) -> int:
        """Committed frames kept."""
        return len(self.slots)

    def free_slot(self) -> int:
        """The buffer slot the next frame writes: the lowest one no kept frame holds."""
        used = set(self.slots)
        return next(s for s in range(self.max_frames) if s not in used)

    @property
    def max_frames(self) -> int:
        return self.action_emb.shape[1]

    @property
    def batch_size(self) -> int:
        return self.action_emb.shape[0]
