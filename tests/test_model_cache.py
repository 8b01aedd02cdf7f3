"""Frame-by-frame generation with the KV cache computes what the uncached window computes."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.usefixtures("single_thread")

from _helpers_train import tiny_model_config
from hma.model import Slide, WorldModel

T = 4


def _model(kind: str, injection: str) -> WorldModel:
    torch.manual_seed(0)
    model = WorldModel(tiny_model_config(kind, injection=injection, num_frames=T)).eval()
    for p in model.parameters():  # zero-initialized adaLN/bias would hide cache bugs
        if not p.abs().sum():
            p.data.normal_(0, 0.1)
    return model


def _inputs(kind: str, frames: int):
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, 64, (2, frames, 4, 4), generator=g) if kind == "discrete" else torch.randn(2, frames, 3, 4, 4, generator=g)
    return tokens, torch.randn(2, frames, 3, generator=g)


def _main(out, kind):
    return out.logits if kind == "discrete" else out.cond


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
@pytest.mark.parametrize("injection", ["concat+modulate", "add+cross_attention"])
@torch.no_grad()
def test_cached_frames_equal_uncached_window(kind: str, injection: str) -> None:
    model = _model(kind, injection)
    tokens, actions = _inputs(kind, T + 2)
    mask = torch.rand(2, 4, 4, generator=torch.Generator().manual_seed(5)) < 0.5
    full = model(tokens[:, :T], actions[:, :T], embodiment="arm")
    masked_full = model(tokens[:, :T], actions[:, :T], embodiment="arm",
                        token_mask=torch.zeros(2, T, 4, 4, dtype=torch.bool).index_fill_(1, torch.tensor([T - 1]), True) & mask[:, None])
    cache = model.new_cache(2)
    for t in range(T):
        prev = actions[:, t - 1] if t else None
        out = model.forward_frame(tokens[:, t], prev, embodiment="arm", cache=cache)
        torch.testing.assert_close(_main(out, kind)[:, 0], _main(full, kind)[:, t], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.action_pred[:, 0], full.action_pred[:, t], atol=1e-5, rtol=1e-5)
        if t == T - 1:  # a partly masked new frame, as during unmasking steps
            out = model.forward_frame(tokens[:, t], prev, embodiment="arm", frame_mask=mask, cache=cache)
            torch.testing.assert_close(_main(out, kind)[:, 0], _main(masked_full, kind)[:, t], atol=1e-5, rtol=1e-5)
        model.commit_frame(tokens[:, t], prev, embodiment="arm", cache=cache)
    # Sliding (exact): the next frames match the uncached window over the same last T frames.
    for end in (T + 1, T + 2):
        window = model(tokens[:, end - T : end], actions[:, end - T : end], embodiment="arm")
        out = model.forward_frame(tokens[:, end - 1], actions[:, end - 2], embodiment="arm", cache=cache)
        torch.testing.assert_close(_main(out, kind)[:, 0], _main(window, kind)[:, -1], atol=1e-5, rtol=1e-5)
        model.commit_frame(tokens[:, end - 1], actions[:, end - 2], embodiment="arm", cache=cache)


@torch.no_grad()
def test_prefill_equals_frame_by_frame_commits() -> None:
    model = _model("discrete", "concat+modulate")
    tokens, actions = _inputs("discrete", T)
    full = model(tokens, actions, embodiment="arm")
    cache = model.new_cache(2)
    model.prefill(tokens[:, : T - 1], actions[:, : T - 1], embodiment="arm", cache=cache)
    out = model.forward_frame(tokens[:, T - 1], actions[:, T - 2], embodiment="arm", cache=cache)
    torch.testing.assert_close(out.logits[:, 0], full.logits[:, T - 1], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_evict_slide_keeps_the_window_without_recomputing() -> None:
    model = _model("discrete", "concat+modulate")
    tokens, actions = _inputs("discrete", T + 1)
    cache = model.new_cache(2, slide=Slide.EVICT)
    model.prefill(tokens[:, :T], actions[:, :T], embodiment="arm", cache=cache)
    kept = [k.clone() for k in cache.keys]
    out = model.forward_frame(tokens[:, T], actions[:, T - 1], embodiment="arm", cache=cache)
    assert cache.length == T - 1 and out.logits.shape == (2, 1, 16, 64)
    assert cache.slots == list(range(1, T))  # the oldest frame's slot 0 now holds the new frame
    assert all(torch.equal(k[:, :, 1:], old[:, :, 1:]) for k, old in zip(cache.keys, kept))


@pytest.mark.parametrize("injection", ["concat+modulate", "cross_attention"])
@torch.no_grad()
def test_evict_ring_equals_a_cache_kept_in_time_order(injection: str) -> None:
    """The ring never moves keys; re-ordering them into time order after every frame (what a
    shifting cache does) must give the same outputs over a rollout that wraps the ring twice."""
    model = _model("discrete", injection)
    for block in model.trunk.blocks:  # a distinct learned bias per frame distance (it starts at zero)
        block.time_bias.normal_(generator=torch.Generator().manual_seed(1))
    frames = 3 * T + 1
    tokens, actions = _inputs("discrete", frames)
    ring, ordered = model.new_cache(2, slide=Slide.EVICT), model.new_cache(2, slide=Slide.EVICT)
    for cache in (ring, ordered):
        model.prefill(tokens[:, :2], actions[:, :2], embodiment="arm", cache=cache)
    for t in range(2, frames):
        outs = [model.forward_frame(tokens[:, t], actions[:, t - 1], embodiment="arm", cache=c) for c in (ring, ordered)]
        torch.testing.assert_close(outs[0].logits, outs[1].logits, atol=1e-5, rtol=1e-5)
        for c in (ring, ordered):
            model.commit_frame(tokens[:, t], actions[:, t - 1], embodiment="arm", cache=c)
        n = ordered.length
        for k in (*ordered.keys, *ordered.values):
            k[:, :, :n] = k[:, :, ordered.slots].clone()
        ordered.slots = list(range(n))
    assert sorted(ring.slots) != ring.slots  # the ring did wrap
