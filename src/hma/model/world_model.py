"""The HMA world model: token embedding, per-embodiment action stems/heads, shared trunk,
output heads, the training loss and the frame-by-frame (KV-cached) forward.

An embodiment whose data records a proprioceptive state also gets a state head, the action
head's sibling: it reads frame t's output and predicts the state at frame t, so a rollout
carries a state that follows the frames it generates (what state-based policies read).

Action convention: ``actions[:, t]`` is the action taken at frame t; it leads to frame
t+1. Frame t is therefore conditioned on the embedding of ``actions[:, t-1]`` (frame 0
on a learned "no action" embedding), and frame t's output predicts ``actions[:, t]``.
With causal temporal attention, frame t+1 sees action t and frame t sees no action from
t on, whatever the masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from hma.config import EmbodimentSpec, Injection, ModelConfig, Setting, TokenKind
from hma.errors import ConfigError, EmbodimentError
from hma.model.cache import KVCache, Slide
from hma.model.objectives import sample_masks
from hma.model.trunk import Mlp, Trunk


@dataclass
class WorldModelOutput:
    # Discrete: (B,T,S,V), or (B,T,S,F,Vf) when the vocabulary is factorized into F digits
    # (config.vocab_factors > 1; token id = sum_i digit_i * Vf**i).
    logits: Tensor | None
    cond: Tensor | None  # continuous: (B,T,S,D) per-token condition for the diffusion head
    action_pred: Tensor  # (B,T,k*A) normalized prediction of actions[:, t] from frame t
    state_pred: Tensor | None = None  # (B,T,S) normalized state at frame t; None without a state head


class WorldModel(nn.Module):
    """Masked-autoregressive action-video world model over discrete tokens or continuous latents."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.injection = c.injection_flags
        d = c.width
        s_grid = c.tokens_per_frame
        self.tokens_per_frame = s_grid + (1 if Injection.CONCAT in self.injection else 0)
        if c.kind == TokenKind.DISCRETE:
            self.token_embed = nn.ModuleList(nn.Embedding(c.factor_size, d) for _ in range(c.vocab_factors))
            self.token_heads = nn.ModuleList(nn.Linear(d, c.factor_size) for _ in range(c.vocab_factors))
        else:
            from hma.model.diffusion_head import DiffusionHead  # diffusers import, continuous models only

            self.latent_in = nn.Linear(c.latent_channels, d)
            self.diffusion = DiffusionHead(c.latent_channels, d, width=c.diffusion_width,
                                           num_blocks=c.diffusion_blocks, train_steps=c.diffusion_train_steps)
        self.mask_token = nn.Parameter(torch.zeros(d))
        # Learned positions: over the tokens of a frame here, over frame distance in each
        # block's temporal attention (relative, so the KV cache can slide; hma.model.trunk).
        self.pos_embed = nn.Parameter(torch.zeros(self.tokens_per_frame, d))
        self.no_action = nn.Parameter(torch.zeros(d))  # frame 0 of a window: nothing led to it
        self.hidden_action = nn.Parameter(torch.zeros(d))  # an action the setting hides
        self.trunk = Trunk(c.num_blocks, d, c.num_heads, c.mlp_ratio, self.injection, c.num_frames)
        self.stems = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        self.state_heads = nn.ModuleDict()  # only the embodiments that record a state
        self._init_weights()
        for spec in c.embodiments.values():
            self._build_embodiment(spec)

    # -- initialization --------------------------------------------------------------
    def _init_weights(self) -> None:
        """Small normal weights, zero biases; the adaLN projections start at zero, so every block
        starts unmodulated and actions are learned in gradually. (DiT's adaLN-Zero also gates
        each residual branch with a zero-initialized scale; this trunk's modulation has no gates.)"""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
        for p in (self.mask_token, self.pos_embed, self.no_action, self.hidden_action):
            nn.init.normal_(p, std=0.02)
        for block in self.trunk.blocks:
            if block.adaln is not None:
                nn.init.zeros_(block.adaln[-1].weight)
                nn.init.zeros_(block.adaln[-1].bias)
        if self.config.kind == TokenKind.CONTINUOUS:
            self.diffusion.reset_parameters()

    # -- embodiments -----------------------------------------------------------------
    def _build_embodiment(self, spec: EmbodimentSpec) -> None:
        if "." in spec.name or not spec.name:
            raise ConfigError(f"embodiment name {spec.name!r} must be non-empty and contain no '.'")
        d = self.config.width
        ref = self.no_action
        parts = {self.stems: Mlp(spec.chunk_dim, d, d), self.heads: Mlp(d, d, spec.chunk_dim)}
        if spec.state_dim:
            parts[self.state_heads] = Mlp(d, d, spec.state_dim)
        for modules, mlp in parts.items():
            for m in mlp:
                if isinstance(m, nn.Linear):
                    nn.init.trunc_normal_(m.weight, std=0.02)
                    nn.init.zeros_(m.bias)
            modules[spec.name] = mlp.to(device=ref.device, dtype=ref.dtype)

    def add_embodiment(self, spec: EmbodimentSpec) -> None:
        """Add a robot: a new stem and head; no other weight changes (paper sec. 3.2)."""
        if spec.name in self.config.embodiments:
            raise EmbodimentError(f"embodiment {spec.name!r} already exists in this model")
        self.config.embodiments[spec.name] = spec
        self._build_embodiment(spec)

    def check_actions(self, embodiment: str, actions: Tensor | None) -> EmbodimentSpec:
        """The embodiment's spec; a clear error for an unknown name or a wrong action size."""
        spec = self.config.embodiments.get(embodiment)
        if spec is None:
            known = ", ".join(sorted(self.config.embodiments)) or "none"
            raise EmbodimentError(f"embodiment {embodiment!r} is unknown to this model, expected one of: {known}")
        if actions is not None and actions.shape[-1] != spec.chunk_dim:
            raise EmbodimentError(
                f"actions for {embodiment!r} have {actions.shape[-1]} values per frame, expected "
                f"{spec.chunk_dim} (action_dim {spec.action_dim} x chunk {spec.chunk})"
            )
        return spec

    # -- pieces of the forward pass --------------------------------------------------
    def _digits(self, ids: Tensor) -> Tensor:
        """Token ids (...) -> their vocabulary digits (..., F): id = sum_i digit_i * Vf**i."""
        c = self.config
        ids = ids.long()
        return torch.stack([torch.div(ids, c.factor_size ** i, rounding_mode="floor") % c.factor_size
                            for i in range(c.vocab_factors)], dim=-1)

    def _embed_tokens(self, tokens: Tensor, token_mask: Tensor | None) -> Tensor:
        """tokens (B,T,h,w) long or (B,T,C,h,w) float -> (B,T,S,D), masked positions -> mask token."""
        c = self.config
        grid = tuple(tokens.shape[-2:])
        if grid != c.grid:
            raise ConfigError(f"token grid {grid} does not match the model's grid {c.grid}")
        if c.kind == TokenKind.DISCRETE:
            digits = self._digits(rearrange(tokens, "b t h w -> b t (h w)"))  # (B,T,S,F)
            x = sum(emb(digits[..., i]) for i, emb in enumerate(self.token_embed))  # (B,T,S,D)
        else:
            x = self.latent_in(rearrange(tokens, "b t c h w -> b t (h w) c").to(self.mask_token.dtype))  # (B,T,S,D)
        if token_mask is not None:
            m = rearrange(token_mask, "b t h w -> b t (h w) 1")
            x = torch.where(m, self.mask_token.to(x.dtype), x)
        return x

    def _action_embed(self, actions: Tensor, hidden: Tensor | None, embodiment: str) -> Tensor:
        """actions (B,N,k*A), hidden (B,N) bool -> embeddings (B,N,D)."""
        e = self.stems[embodiment](actions.to(self.no_action.dtype))  # (B,N,D)
        if hidden is not None:
            e = torch.where(hidden[..., None], self.hidden_action.to(e.dtype), e)
        return e

    def _assemble(self, tok: Tensor, act: Tensor) -> Tensor:
        """Frame tokens (B,T,S,D) + their action embeddings (B,T,D) -> trunk input (B,T,S',D)."""
        x = tok
        if Injection.ADD in self.injection:
            x = x + act[:, :, None]
        if Injection.CONCAT in self.injection:
            x = torch.cat([x, act[:, :, None]], dim=2)  # (B,T,S+1,D)
        return x + self.pos_embed

    def _outputs(self, h: Tensor, embodiment: str) -> WorldModelOutput:
        """Normed trunk output (B,T,S',D) -> token logits / diffusion condition and action prediction."""
        spatial = h[:, :, : self.config.tokens_per_frame]  # (B,T,S,D)
        action_pred = self._action_pred(h, embodiment)  # (B,T,k*A)
        state_pred = self._state_pred(h, embodiment)  # (B,T,S) or None
        if self.config.kind == TokenKind.CONTINUOUS:
            return WorldModelOutput(logits=None, cond=spatial, action_pred=action_pred, state_pred=state_pred)
        logits = [head(spatial) for head in self.token_heads]  # F x (B,T,S,Vf)
        logits = logits[0] if len(logits) == 1 else torch.stack(logits, dim=3)  # (B,T,S,V) or (B,T,S,F,Vf)
        return WorldModelOutput(logits=logits, cond=None, action_pred=action_pred, state_pred=state_pred)

    def _frame_feature(self, h: Tensor) -> Tensor:
        """Normed trunk output (B,T,S',D) -> one feature per frame (B,T,D): the action slot, or the mean token."""
        s = self.config.tokens_per_frame
        return h[:, :, s] if Injection.CONCAT in self.injection else h[:, :, :s].mean(dim=2)

    def _action_pred(self, h: Tensor, embodiment: str) -> Tensor:
        """Normed trunk output (B,T,S',D) -> (B,T,k*A)."""
        return self.heads[embodiment](self._frame_feature(h))

    def _state_pred(self, h: Tensor, embodiment: str) -> Tensor | None:
        """Normed trunk output (B,T,S',D) -> (B,T,S) normalized state, or None without a state head."""
        head = self.state_heads[embodiment] if embodiment in self.state_heads else None
        return None if head is None else head(self._frame_feature(h))

    # -- full-window forward ---------------------------------------------------------
    def forward(self, tokens: Tensor, actions: Tensor, *, embodiment: str, token_mask: Tensor | None = None,
                action_mask: Tensor | None = None) -> WorldModelOutput:
        """Uncached forward over a window (see docs/dev/contracts.md, "World model").

        tokens (B,T,h,w) long or (B,T,C,h,w) float; actions (B,T,k*A) normalized;
        token_mask (B,T,h,w) True = masked; action_mask (B,T) True = hidden.
        """
        return self._outputs(self._window_hidden(tokens, actions, embodiment, token_mask, action_mask), embodiment)

    def _window_hidden(self, tokens: Tensor, actions: Tensor, embodiment: str, token_mask: Tensor | None,
                       action_mask: Tensor | None) -> Tensor:
        """The trunk's normed output over a window: (B,T,S',D)."""
        self.check_actions(embodiment, actions)
        t = tokens.shape[1]
        if t > self.config.num_frames:
            raise ConfigError(f"window of {t} frames is longer than the model's {self.config.num_frames}")
        tok = self._embed_tokens(tokens, token_mask)  # (B,T,S,D)
        act = self._window_actions(actions, action_mask, embodiment)  # (B,T,D)
        x = self._assemble(tok, act)  # (B,T,S',D)
        return self.trunk(x, act, action_context=act)

    def _window_actions(self, actions: Tensor, action_mask: Tensor | None, embodiment: str) -> Tensor:
        """Frame t's conditioning is action t-1: shift right, "no action" at frame 0. -> (B,T,D)"""
        b = actions.shape[0]
        prev = self._action_embed(actions[:, :-1], None if action_mask is None else action_mask[:, :-1], embodiment)
        first = self.no_action.expand(b, 1, -1).to(prev.dtype)  # (B,1,D)
        return torch.cat([first, prev], dim=1)  # (B,T,D)

    # -- frame-by-frame forward with a KV cache --------------------------------------
    def new_cache(self, batch_size: int, max_frames: int | None = None, *, slide: Slide = Slide.EXACT) -> KVCache:
        """An empty cache for up to ``max_frames`` frames (default and maximum: the window T)."""
        c = self.config
        max_frames = c.num_frames if max_frames is None else max_frames
        if not 1 <= max_frames <= c.num_frames:
            raise ConfigError(f"cache of {max_frames} frames must hold between 1 and the model's window {c.num_frames}")
        ref = self.no_action
        shape = (batch_size * self.tokens_per_frame, c.num_heads, max_frames, c.width // c.num_heads)
        return KVCache(
            keys=[ref.new_zeros(shape) for _ in range(c.num_blocks)],
            values=[ref.new_zeros(shape) for _ in range(c.num_blocks)],
            token_emb=ref.new_zeros(batch_size, max_frames, c.tokens_per_frame, c.width),
            action_emb=ref.new_zeros(batch_size, max_frames, c.width),
            slide=Slide(slide),
        )

    def forward_frame(self, frame_tokens: Tensor, action_prev: Tensor | None, *, embodiment: str,
                      frame_mask: Tensor | None = None, cache: KVCache) -> WorldModelOutput:
        """Run one new frame against the cached past; the committed frames are not changed.

        frame_tokens (B,h,w) long or (B,C,h,w) float; action_prev (B,k*A): the action taken
        at the previous frame (ignored for the first frame; None = hidden); frame_mask
        (B,h,w) True = masked. Returns outputs with T = 1. When the cache already holds
        ``max_frames`` frames it slides first (drops the oldest frame, see :class:`Slide`).
        """
        return self._frame(frame_tokens, action_prev, embodiment, frame_mask, cache, commit=False)

    def commit_frame(self, frame_tokens: Tensor, action_prev: Tensor | None, *, embodiment: str,
                     cache: KVCache) -> Tensor | None:
        """Append a finished (unmasked) frame to the cache: its keys/values at every block are
        computed once, here. Same arguments as :meth:`forward_frame`. Of the output heads only
        the state head runs: returns the frame's normalized state (B,S), or None without one."""
        return self._frame(frame_tokens, action_prev, embodiment, None, cache, commit=True)

    def _frame(self, frame_tokens: Tensor, action_prev: Tensor | None, embodiment: str,
               frame_mask: Tensor | None, cache: KVCache, *, commit: bool) -> WorldModelOutput | Tensor | None:
        self.check_actions(embodiment, action_prev)
        cache.check_batch(frame_tokens.shape[0])
        if cache.length == cache.max_frames and cache.drop_oldest(self.no_action):
            self._encode_cache(cache, cache.length)
        tok = self._embed_tokens(frame_tokens[:, None], None if frame_mask is None else frame_mask[:, None])  # (B,1,S,D)
        b = tok.shape[0]
        if cache.length == 0:
            act = self.no_action.expand(b, 1, -1)  # (B,1,D)
        elif action_prev is None:
            act = self.hidden_action.expand(b, 1, -1)
        else:
            act = self._action_embed(action_prev[:, None], None, embodiment)  # (B,1,D)
        n, slot, index = cache.next_frame(act[:, 0])
        h = self.trunk(self._assemble(tok, act), act, kv_buffers=cache.buffers, start=slot,
                       read=n + 1, bias_index=index, action_context=cache.action_emb[:, : n + 1])
        if not commit:
            return self._outputs(h, embodiment)
        cache.commit(n, slot, tok[:, 0])
        state = self._state_pred(h, embodiment)  # (B,1,S) or None
        return None if state is None else state[:, 0]

    def prefill(self, tokens: Tensor, actions: Tensor | None, *, embodiment: str, cache: KVCache) -> Tensor | None:
        """Commit several context frames in one window pass, like n calls of :meth:`commit_frame`
        on an empty cache. tokens (B,n,h,w) or (B,n,C,h,w); actions (B,n,k*A) with
        ``actions[:, t]`` taken at frame t (the last one is not used); None = hidden.
        Returns the last frame's normalized state (B,S), or None without a state head."""
        self.check_actions(embodiment, actions)
        b, n = tokens.shape[:2]
        if actions is None:
            act = torch.cat([self.no_action.expand(b, 1, -1), self.hidden_action.expand(b, n - 1, -1)], dim=1)
        else:
            act = self._window_actions(actions, None, embodiment)  # (B,n,D)
        cache.fill(self._embed_tokens(tokens, None), act)
        h = self._encode_cache(cache, n)  # (B,n,S',D)
        state = self._state_pred(h[:, -1:], embodiment)  # (B,1,S) or None
        return None if state is None else state[:, 0]

    def _encode_cache(self, cache: KVCache, n: int) -> Tensor:
        """Write the keys/values of the cache's first n frames from their stored embeddings;
        returns the trunk's output over them (B,n,S',D)."""
        tok, act = cache.token_emb[:, :n], cache.action_emb[:, :n]  # (B,n,S,D), (B,n,D)
        h = self.trunk(self._assemble(tok, act), act, kv_buffers=cache.buffers, start=0, action_context=act)
        cache.encoded(n)
        return h

    # -- training objective ----------------------------------------------------------
    def loss(self, batch: dict, *, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        """Masked-autoregression loss of one batch.

        batch: ``frames`` (B,T,h,w) long or (B,T,C,h,w) float, ``actions`` (B,T,k*A),
        ``embodiment`` str, optional ``setting`` (:class:`Setting`, default full dynamics) and
        ``state`` (B,T,S) normalized, scored by the embodiment's state head at every frame.
        """
        tokens, actions, embodiment = batch["frames"], batch["actions"], batch["embodiment"]
        setting = Setting(batch.get("setting", Setting.FULL))
        b, t = tokens.shape[:2]
        c = self.config
        masks = sample_masks(b, t, c.tokens_per_frame, setting, generator=generator, device=tokens.device,
                             visible_past=c.visible_past)
        token_mask = rearrange(masks.tokens, "b t (h w) -> b t h w", h=c.grid[0])
        if c.action_dropout > 0:  # hidden, not scored: the action-free prediction that guidance subtracts
            dropped = torch.rand((b, t), generator=generator, device=tokens.device) < c.action_dropout  # (B,T)
            masks.actions = masks.actions | dropped
        inputs = tokens
        if c.kind == TokenKind.DISCRETE and c.corrupt_max > 0:
            # MaskGIT-style robustness: some visible tokens are replaced by random ids.
            rate = torch.rand((b, 1, 1, 1), generator=generator, device=tokens.device) * c.corrupt_max
            corrupt = (torch.rand(tokens.shape, generator=generator, device=tokens.device) < rate) & ~token_mask
            noise = torch.randint(0, c.vocab_size, tokens.shape, generator=generator, device=tokens.device)
            inputs = torch.where(corrupt, noise, tokens)
        h = self._window_hidden(inputs, actions, embodiment, token_mask, masks.actions)  # (B,T,S',D)

        metrics: dict[str, float] = {}
        if c.kind == TokenKind.DISCRETE:
            weight = None
            if c.changed_token_weight != 1.0:
                changed = torch.zeros_like(tokens, dtype=torch.bool)  # (B,T,h,w); frame 0 is never masked
                changed[:, 1:] = tokens[:, 1:] != tokens[:, :-1]
                weight = 1.0 + (c.changed_token_weight - 1.0) * changed.flatten(2).float()  # (B,T,S)
            token_loss = self._masked_token_loss(h[:, :, : c.tokens_per_frame], tokens, masks.tokens, weight)
            metrics["token_ce"] = float(token_loss.detach())
        else:
            cond = h[:, :, : c.tokens_per_frame]  # (B,T,S,D)
            target = rearrange(tokens, "b t c h w -> (b t h w) c").to(cond.dtype)
            token_loss = self.diffusion(target, rearrange(cond, "b t s d -> (b t s) d"),
                                        masks.tokens.reshape(-1), generator=generator)
            metrics["diffusion_mse"] = float(token_loss.detach())
        action_pred = self._action_pred(h, embodiment)  # (B,T,k*A)
        scored = masks.action_loss.to(action_pred.dtype)  # (B,T)
        per_frame = (action_pred - actions.to(action_pred.dtype)).pow(2).mean(-1)  # (B,T)
        action_loss = (per_frame * scored).sum() / scored.sum().clamp(min=1.0)
        if masks.action_loss.any():
            metrics["action_mse"] = float(action_loss.detach())
        loss = token_loss + c.action_loss_weight * action_loss
        state_pred = self._state_pred(h, embodiment) if "state" in batch else None  # (B,T,S)
        if state_pred is not None:
            state_loss = (state_pred - batch["state"].to(state_pred.dtype)).pow(2).mean()
            metrics["state_mse"] = float(state_loss.detach())
            loss = loss + c.state_loss_weight * state_loss
        metrics["loss"] = float(loss.detach())
        return loss, metrics

    def _masked_token_loss(self, spatial: Tensor, tokens: Tensor, mask: Tensor, weight: Tensor | None) -> Tensor:
        """token_cross_entropy of the heads' logits at the masked positions only: the vocabulary
        heads run on the scored tokens instead of all of them (about half, by the cosine schedule).
        spatial (B,T,S,D), tokens (B,T,h,w), mask and weight (B,T,S)."""
        picked = spatial[mask]  # (N,D)
        digits = self._digits(rearrange(tokens, "b t h w -> b t (h w)")[mask])  # (N,F)
        ce = sum(F.cross_entropy(head(picked).float(), digits[:, i], reduction="none")
                 for i, head in enumerate(self.token_heads))  # (N,)
        w = torch.ones_like(ce) if weight is None else weight[mask].to(ce.dtype)
        return (ce * w).sum() / w.sum().clamp(min=1e-6)

    def token_cross_entropy(self, logits: Tensor, tokens: Tensor, mask: Tensor, *, weight: Tensor | None = None) -> Tensor:
        """Mean cross-entropy (nats, summed over vocabulary digits) of tokens (B,T,h,w) at mask (B,T,S),
        weighted by ``weight`` (B,T,S) when given."""
        c = self.config
        if c.vocab_factors == 1:
            logits = logits[:, :, :, None]  # (B,T,S,1,V)
        digits = self._digits(rearrange(tokens, "b t h w -> b t (h w)"))  # (B,T,S,F)
        ce = F.cross_entropy(rearrange(logits, "b t s f v -> (b t s f) v").float(), digits.reshape(-1),
                             reduction="none")
        ce = rearrange(ce, "(n f) -> n f", f=c.vocab_factors).sum(-1)  # (B*T*S,)
        m = mask.reshape(-1).to(ce.dtype)
        if weight is not None:
            m = m * weight.reshape(-1).to(ce.dtype)
        return (ce * m).sum() / m.sum().clamp(min=1e-6)
