"""What training reports on held-out windows: the masked-token perplexity beside a unigram
baseline's, next-frame token accuracy on held-out and training windows, the state head's error."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from hma.config import ModelConfig, Setting, TokenKind
from hma.model.objectives import TokenAccuracy, masked_cross_entropy, next_frame_token_accuracy
from hma.train.data import TrainingData, to_tensors


@torch.no_grad()
def evaluate(model: nn.Module, data: TrainingData, *, batch_size: int, max_windows: int, seed: int) -> dict[str, Any]:
    """Held-out forward-dynamics loss; for discrete tokens the perplexity exp(CE) over masked
    tokens (cosine-scheduled masks, fixed seed) beside a unigram baseline's on the same tokens.
    Where the data records a state and the model has a state head: ``heldout_state_mse``, the
    head's mean squared error in normalized units on fully visible frames (as a rollout reads
    it out), beside ``heldout_state_mse_of_mean``: that of predicting the training mean.
    Discrete runs also get next-frame token accuracy (``token_accuracy_*``) on held-out and
    (``train_token_accuracy_*``) on as many training windows: their gap is overfitting."""
    was_training = model.training
    model.eval()
    try:
        return _heldout_metrics(model, data, batch_size=batch_size, max_windows=max_windows, seed=seed)
    finally:
        model.train(was_training)


def _heldout_metrics(model: nn.Module, data: TrainingData, *, batch_size: int, max_windows: int,
                     seed: int) -> dict[str, Any]:
    device = next(model.parameters()).device
    c: ModelConfig = model.config
    generator = torch.Generator(device=device).manual_seed(seed)
    per_dataset = max(1, max_windows // max(1, len(data.heldout)))
    log_unigram = None
    if data.token_counts is not None:
        probs = (data.token_counts + 1) / (data.token_counts.sum() + len(data.token_counts))  # add-one smoothing
        log_unigram = torch.from_numpy(np.log(probs)).to(device)
    total_ce = total_unigram = total_tokens = 0.0
    state_se = state_mean_se = state_frames = 0.0
    windows = 0
    for ds in data.heldout:
        if not len(ds):
            continue
        take = _spread(len(ds), per_dataset)
        for start in range(0, len(take), batch_size):
            batch = to_tensors(ds.get_batch(take[start : start + batch_size]), device)
            b, t = batch["frames"].shape[:2]
            state = batch.pop("state", None)
            if state is not None and batch["embodiment"] in model.state_heads:
                with torch.no_grad():
                    pred = model(batch["frames"], batch["actions"], embodiment=batch["embodiment"]).state_pred
                state_se += float((pred.float() - state).pow(2).mean(-1).sum())
                state_mean_se += float(state.pow(2).mean(-1).sum())  # the training mean is 0 here
                state_frames += b * t
            if c.kind == TokenKind.DISCRETE:
                ce, n, masked = masked_cross_entropy(model, batch["frames"], batch["actions"], embodiment=batch["embodiment"],
                                                     setting=Setting.FORWARD, generator=generator)
                total_ce += ce
                total_unigram += float(-log_unigram[batch["frames"].reshape(b, t, -1)[masked]].sum())
                total_tokens += n
            else:
                batch["setting"] = Setting.FORWARD
                loss, _ = model.loss(batch, generator=generator)
                total_ce += float(loss) * b
                total_tokens += b
            windows += b
    if not windows:
        return {"heldout_windows": 0}
    extra = {"heldout_state_mse": state_se / state_frames,
             "heldout_state_mse_of_mean": state_mean_se / state_frames} if state_frames else {}
    if c.kind == TokenKind.DISCRETE:
        ce, uni = total_ce / total_tokens, total_unigram / total_tokens
        accuracy = {f"{split}token_accuracy_{k}": v for split, sets in (("", data.heldout), ("train_", data.train))
                    for k, v in _token_accuracy(model, sets, per_dataset, batch_size, device).summary().items()}
        return {"heldout_windows": windows, "heldout_tokens": int(total_tokens), "cross_entropy": ce,
                "perplexity": math.exp(ce), "unigram_perplexity": math.exp(uni), **accuracy, **extra}
    return {"heldout_windows": windows, "heldout_diffusion_loss": total_ce / total_tokens, **extra}


def _spread(n: int, k: int) -> np.ndarray:
    """``min(n, k)`` indices spread evenly over ``range(n)``."""
    return np.linspace(0, n - 1, min(n, k)).astype(np.int64)


def _token_accuracy(model: nn.Module, datasets: list, per_dataset: int, batch_size: int,
                    device: torch.device) -> TokenAccuracy:
    """Next-frame token accuracy (hma.model.objectives.next_frame_token_accuracy) over up to
    ``per_dataset`` windows of each dataset, spread over it."""
    total = TokenAccuracy()
    for ds in datasets:
        take = _spread(len(ds), per_dataset)
        for start in range(0, len(take), batch_size):
            batch = to_tensors(ds.get_batch(take[start : start + batch_size]), device)
            total += next_frame_token_accuracy(model, batch["frames"], batch["actions"], embodiment=batch["embodiment"])
    return total
