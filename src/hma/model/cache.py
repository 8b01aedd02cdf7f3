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

import torch
from torch import Tensor

from hma.errors import ConfigError


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

    @property
    def buffers(self) -> list[tuple[Tensor, Tensor]]:
        """Each block's (keys, values) buffers, which the trunk reads and writes in place."""
        return list(zip(self.keys, self.values))

    def check_batch(self, batch: int) -> None:
        if batch != self.batch_size:
            raise ConfigError(f"frame batch of {batch} does not match the cache's batch {self.batch_size}")

    def next_frame(self, action_emb: Tensor) -> tuple[int, int, Tensor]:
        """Place the next frame: record its action embedding (B, D) at its time index and return
        (time index n, buffer slot, attention-bias index (1, n+1): each slot's frame distance).

        The free slot takes the new frame's keys/values; the kept frames and it fill slots
        0..n (a ring once the cache has slid), so the attention reads one contiguous buffer.
        Only :meth:`commit` counts the slot as taken.
        """
        n, slot = self.length, self.free_slot()
        distance = {s: n - i for i, s in enumerate(self.slots)} | {slot: 0}
        index = torch.tensor([[distance[s] for s in range(n + 1)]], device=action_emb.device)  # (1, n+1)
        self.action_emb[:, n] = action_emb  # action embeddings stay in time order (cross-attention reads them)
        return n, slot, index

    def commit(self, n: int, slot: int, token_emb: Tensor) -> None:
        """The frame placed by :meth:`next_frame` is finished: keep its embedded tokens (B, S, D)."""
        self.token_emb[:, n] = token_emb
        self.slots.append(slot)

    def fill(self, token_emb: Tensor, action_emb: Tensor) -> None:
        """Start an empty cache with n frames' embeddings (B, n, S, D) and (B, n, D); the caller
        then encodes them (:meth:`encoded`)."""
        if self.length:
            raise ConfigError(f"prefill needs an empty cache, this one holds {self.length} frames")
        n = token_emb.shape[1]
        if n > self.max_frames:
            raise ConfigError(f"prefill of {n} frames exceeds the cache's {self.max_frames}")
        self.token_emb[:, :n] = token_emb
        self.action_emb[:, :n] = action_emb

    def drop_oldest(self, no_action: Tensor) -> bool:
        """Slide past the oldest frame (see :class:`Slide`); True when the kept frames must be
        re-encoded (``exact``: they now start with the "no action" embedding ``no_action`` (D,))."""
        n = self.length - 1
        self.action_emb[:, :n] = self.action_emb[:, 1:].clone()
        self.slots.pop(0)  # evict: its slot is the next frame's; the kept keys/values stay where they are
        if self.slide == Slide.EVICT:
            return False
        self.token_emb[:, :n] = self.token_emb[:, 1:].clone()
        self.action_emb[:, 0] = no_action  # as the uncached window sees its first frame
        return True

    def encoded(self, n: int) -> None:
        """The first n frames' keys/values were just written to slots 0..n-1 in time order."""
        self.slots = list(range(n))
