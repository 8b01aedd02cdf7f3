"""The shared spatial-temporal transformer trunk (paper sec. 3.1).

Every block: bidirectional spatial attention over one frame's tokens, causal temporal
attention over the same token position across frames, MLP; all pre-norm. Attention is
``F.scaled_dot_product_attention`` (it picks the fused kernel for the device).

The temporal attention can run in two ways with the same weights:
- window mode: all T frames at once, causal over frames;
- cache mode: new frame(s) whose keys/values are written into the cache's buffers and
  whose queries attend to the cached frames before them plus themselves, which is what the
  window mode computes for those frames, so frame-by-frame generation skips recomputing
  the past (see ``hma.model.cache``).

Positions: a learned embedding over the S tokens of a frame (added at the input) and a
learned bias over frame distance in the temporal attention (relative, so cached keys stay
valid when the generation window slides).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from hma.config import Injection

KV = tuple[Tensor, Tensor]  # keys, values: each (B*S, H, max_frames, Dh)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: per-frame shift/scale broadcast over the frame's tokens. x (B,T,S,D), shift/scale (B,T,D)."""
    return x * (1 + scale[:, :, None]) + shift[:, :, None]


class Mlp(nn.Sequential):
    def __init__(self, width: int, hidden: int, out: int | None = None) -> None:
        super().__init__(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, out or width))


class Block(nn.Module):
    """Pre-norm spatial attention, causal temporal attention, optional action cross-attention, MLP."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float, injection: Injection, max_frames: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        # Temporal position is relative: a learned bias per head and frame distance. Keys of a
        # cached frame then never depend on its absolute slot, so generation can slide the
        # window without recomputing them (see hma.model.cache).
        self.time_bias = nn.Parameter(torch.zeros(num_heads, max_frames))
        self.norm_spatial = nn.LayerNorm(width)
        self.qkv_spatial = nn.Linear(width, 3 * width)
        self.out_spatial = nn.Linear(width, width)
        self.norm_temporal = nn.LayerNorm(width)
        self.qkv_temporal = nn.Linear(width, 3 * width)
        self.out_temporal = nn.Linear(width, width)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = Mlp(width, int(width * mlp_ratio))
        # adaLN: shift and scale of the three norms from the frame's action embedding.
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width)) if Injection.MODULATE in injection else None
        if Injection.CROSS_ATTENTION in injection:
            self.norm_cross = nn.LayerNorm(width)
            self.q_cross = nn.Linear(width, width)
            self.kv_cross = nn.Linear(width, 2 * width)
            self.out_cross = nn.Linear(width, width)
        else:
            self.q_cross = None

    def forward(self, x: Tensor, action_emb: Tensor, *, time_bias_index: Tensor,
                kv_buffer: KV | None = None, start: int = 0, read: int | None = None,
                action_context: Tensor | None = None) -> Tensor:
        """x (B,T,S,D): T new frames occupying window slots start..start+T-1; action_emb (B,T,D).

        Without ``kv_buffer`` the frames attend causally among themselves (window mode,
        start = 0). With it (the cache's (B*S,H,max_frames,Dh) key/value tensors), the new
        frames' keys/values are written at their slots and the queries attend to slots
        0..start+T-1, i.e. to every cached earlier frame. ``time_bias_index`` (Tq, Tk) long:
        frame distance per query/key, -1 where the key is in the query's future.
        ``action_context`` (B,start+T,D): every frame's action embedding, for cross-attention.
        """
        b, t, s, _ = x.shape
        mods = self.adaln(action_emb).chunk(6, dim=-1) if self.adaln is not None else None  # 6 x (B,T,D)

        # Spatial: bidirectional inside each frame.
        h = self._norm(self.norm_spatial, x, mods, 0)  # (B,T,S,D)
        q, k, v = rearrange(self.qkv_spatial(h), "b t s (three h d) -> three (b t) h s d", three=3, h=self.num_heads)
        a = F.scaled_dot_product_attention(q, k, v)  # (B*T,H,S,Dh)
        x = x + self.out_spatial(rearrange(a, "(b t) h s d -> b t s (h d)", b=b))

        # Temporal: causal over frames, per token position, with a learned bias per frame distance.
        h = self._norm(self.norm_temporal, x, mods, 1)  # (B,T,S,D)
        q, k, v = rearrange(self.qkv_temporal(h), "b t s (three h d) -> three (b s) h t d", three=3, h=self.num_heads)
        if kv_buffer is not None:
            kv_buffer[0][:, :, start : start + t] = k
            kv_buffer[1][:, :, start : start + t] = v
            read = start + t if read is None else read
            k, v = kv_buffer[0][:, :, :read], kv_buffer[1][:, :, :read]  # (B*S,H,read,Dh)
        bias = self.time_bias[:, time_bias_index.clamp(min=0)]  # (H,Tq,Tk)
        bias = bias.masked_fill(time_bias_index < 0, float("-inf")).to(q.dtype)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None])  # (B*S,H,T,Dh)
        x = x + self.out_temporal(rearrange(a, "(b s) h t d -> b t s (h d)", b=b))

        if self.q_cross is not None:
            x = x + self._cross_attention(x, action_context)

        h = self._norm(self.norm_mlp, x, mods, 2)
        return x + self.mlp(h)

    @staticmethod
    def _norm(norm: nn.LayerNorm, x: Tensor, mods: tuple[Tensor, ...] | None, i: int) -> Tensor:
        h = norm(x)
        return h if mods is None else modulate(h, mods[2 * i], mods[2 * i + 1])

    def _cross_attention(self, x: Tensor, context: Tensor) -> Tensor:
        """Frame t's tokens attend to the action embeddings of frames <= t (the last T of ``context``)."""
        b, t, s, _ = x.shape
        n = context.shape[1]  # (B,n,D) with n >= T
        q = rearrange(self.q_cross(self.norm_cross(x)), "b t s (h d) -> b h (t s) d", h=self.num_heads)
        k, v = rearrange(self.kv_cross(context), "b n (two h d) -> two b h n d", two=2, h=self.num_heads)
        frame_of_query = torch.arange(n - t, n, device=x.device).repeat_interleave(s)  # (T*S,)
        allowed = torch.arange(n, device=x.device)[None, :] <= frame_of_query[:, None]  # (T*S, n)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # (B,H,T*S,Dh)
        return self.out_cross(rearrange(a, "b h (t s) d -> b t s (h d)", t=t))


def time_bias_index(start: int, num_new: int, device: torch.device) -> Tensor:
    """Frame distance (Tq, Tk) of new frames at slots start.. to keys at slots 0..start+num_new-1; -1 = future."""
    q = torch.arange(start, start + num_new, device=device)[:, None]
    k = torch.arange(start + num_new, device=device)[None, :]
    d = q - k
    return torch.where(d >= 0, d, -1)


class Trunk(nn.Module):
    """A stack of :class:`Block` with a final norm."""

    def __init__(self, num_blocks: int, width: int, num_heads: int, mlp_ratio: float, injection: Injection,
                 max_frames: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, num_heads, mlp_ratio, injection, max_frames) for _ in range(num_blocks))
        self.norm = nn.LayerNorm(width)

    def forward(self, x: Tensor, action_emb: Tensor, *, kv_buffers: list[KV] | None = None, start: int = 0,
                read: int | None = None, bias_index: Tensor | None = None,
                action_context: Tensor | None = None) -> Tensor:
        """x (B,T,S,D) new frames at window slots start.. -> normed output (B,T,S,D); see :meth:`Block.forward`.

        ``read`` and ``bias_index`` (Tq, read) describe a ring-buffer cache whose slots are not
        in time order; by default slots 0..start+T-1 hold the frames in order."""
        index = time_bias_index(start, x.shape[1], x.device) if bias_index is None else bias_index
        for i, block in enumerate(self.blocks):
            x = block(x, action_emb, time_bias_index=index, kv_buffer=None if kv_buffers is None else kv_buffers[i],
                      start=start, read=read, action_context=action_context)
        return self.norm(x)
