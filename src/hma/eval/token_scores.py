"""Token-level scores of a discrete (MaskGIT) run on training-length windows of a dataset's
episodes: the held-out perplexity of masked tokens, and next-frame token accuracy beside
copying the last frame (:mod:`hma.model.objectives`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hma.config import Setting
from hma.data.store import EpisodeStore
from hma.data.windows import WindowDataset
from hma.eval import metrics as M
from hma.eval.clips import encode_clips
from hma.model.objectives import TokenAccuracy, masked_cross_entropy, next_frame_token_accuracy
from hma.model import WorldModel
from hma.run import LoadedRun


@torch.inference_mode()
def heldout_perplexity(model: WorldModel, tokens: Tensor, actions: Tensor, *, embodiment: str, setting: Setting, seed: int,
                       batch_size: int) -> tuple[float, int]:
    """exp(mean masked-token cross-entropy) over windows tokens (N, T, h, w) with actions (N, T, k*A).

    Masks are the training ones for ``setting`` (cosine-scheduled, frame 0 visible) from a
    fixed seed, so two runs are scored on the same masked positions. Returns the
    perplexity and the number of masked tokens it was measured on.
    """
    generator = torch.Generator(device=tokens.device).manual_seed(seed)
    total_ce, total_tokens = 0.0, 0
    for i in range(0, tokens.shape[0], batch_size):
        tok, act = tokens[i : i + batch_size], actions[i : i + batch_size]  # (b, T, h, w), (b, T, k*A)
        ce, n, _ = masked_cross_entropy(model, tok, act, embodiment=embodiment, setting=setting, generator=generator)
        total_ce += ce
        total_tokens += n
    return M.perplexity(total_ce / max(total_tokens, 1)), total_tokens


def scored_windows(loaded: LoadedRun, store: EpisodeStore, episodes: Sequence[int], *, windows: int,
                   device: torch.device) -> tuple[Tensor, Tensor] | None:
    """Up to ``windows`` training-length windows of ``episodes``, spread over them: tokens
    (N, T, h, w) and normalized actions (N, T, k*A); None when no window fits."""
    spec = loaded.embodiments[store.embodiment]
    ds = WindowDataset(store, int(loaded.model.config.num_frames), loaded.frame_hz, episodes=episodes,
                       normalizer=spec.normalizer)
    if not len(ds):
        return None
    take = np.unique(np.linspace(0, len(ds) - 1, min(len(ds), windows)).astype(np.int64))
    batch = ds.get_batch(take)
    tokens = encode_clips(loaded.tokenizer, np.asarray(batch["frames"]), device)  # (N, T, h, w)
    return tokens, torch.from_numpy(batch["actions"]).to(device)  # (N, T, k*A)


def store_perplexity(loaded: LoadedRun, store: EpisodeStore, held: Sequence[int], *, windows: int, batch_size: int,
                     seed: int, passive: bool, device: torch.device) -> tuple[float | None, int]:
    """:func:`heldout_perplexity` on windows of the held-out episodes ``held``; (None, 0) when none fits."""
    found = scored_windows(loaded, store, held, windows=windows, device=device)
    if found is None:
        return None, 0
    # Score a model in the setting it was trained for: a passive model never saw actions.
    setting = Setting.VIDEO if passive else Setting.FORWARD
    return heldout_perplexity(loaded.model, *found, embodiment=store.embodiment, setting=setting, seed=seed,
                              batch_size=batch_size)


@torch.inference_mode()
def store_token_accuracy(loaded: LoadedRun, store: EpisodeStore, episodes: Sequence[int], *, windows: int,
                         batch_size: int, passive: bool, stay_bias: float, guidance: float,
                         device: torch.device) -> dict[str, Any]:
    """Next-frame token accuracy (:func:`hma.model.objectives.next_frame_token_accuracy`) on
    windows of ``episodes``: the true past visible, the last frame predicted in one pass (two
    with guidance on actions), with the sampler's stay bias and guidance."""
    found = scored_windows(loaded, store, episodes, windows=windows, device=device)
    total = TokenAccuracy()
    if found is not None:
        tokens, actions = found
        for i in range(0, tokens.shape[0], batch_size):
            total += next_frame_token_accuracy(loaded.model, tokens[i : i + batch_size], actions[i : i + batch_size],
                                               embodiment=store.embodiment, actions_hidden=passive,
                                               stay_bias=stay_bias, guidance=guidance)
    return total.summary()
