"""Frame-by-frame generation: cached == uncached, determinism, greedy, batching, bounded memory."""

import gc
import resource

import pytest
import torch
from einops import rearrange

from _helpers_sampling import context_and_actions, tiny_model
from hma.errors import ConfigError
from hma.model.cache import Slide
from hma.sampling.engine import CacheMode, Engine, rollout
from hma.sampling.mar import MARSampling, unmask_latent_frame
from hma.sampling.maskgit import MaskGITSampling, UnmaskOrder


pytestmark = pytest.mark.usefixtures("single_thread")


def _rollout(model, mode, sampling, seed, *, batch=2, context=2, new=6, data_seed=0, slide=Slide.EXACT):
    frames, actions = context_and_actions(model, batch=batch, context=context, new=new, seed=data_seed)
    engine = Engine(model, embodiment="arm", mode=mode, sampling=sampling, slide=slide)
    return rollout(engine, frames, actions, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("order", list(UnmaskOrder))
def test_cached_and_uncached_generate_identical_tokens(order: UnmaskOrder) -> None:
    # 2 context + 6 new frames through a 4-frame window: the window slides 4 times.
    model = tiny_model()
    sampling = MaskGITSampling(steps=3, temperature=1.0, order=order)
    cached = _rollout(model, CacheMode.CACHED, sampling, seed=1)
    uncached = _rollout(model, CacheMode.UNCACHED, sampling, seed=1)
    assert cached.shape == (2, 6, 4, 4)
    assert torch.equal(cached, uncached)


def test_evicting_cache_equals_uncached_until_the_window_slides() -> None:
    model = tiny_model()
    sampling = MaskGITSampling(steps=2)
    evict = _rollout(model, CacheMode.CACHED, sampling, seed=1, slide=Slide.EVICT)
    uncached = _rollout(model, CacheMode.UNCACHED, sampling, seed=1)
    # 2 context frames, window 4: new frames 0 and 1 see the same past; then the window slides.
    assert torch.equal(evict[:, :2], uncached[:, :2])
    assert not torch.equal(evict, uncached)  # evicted frames still echo in deeper keys


def test_mar_cached_and_uncached_agree() -> None:
    model = tiny_model("continuous")
    sampling = MARSampling(steps=2, diffusion_steps=3)
    cached = _rollout(model, CacheMode.CACHED, sampling, seed=1, new=3)
    uncached = _rollout(model, CacheMode.UNCACHED, sampling, seed=1, new=3)
    assert cached.shape == (2, 3, 4, 4, 4)
    assert torch.allclose(cached, uncached, atol=1e-4)


def test_same_seed_same_video_other_seed_other_video() -> None:
    model = tiny_model()
    a = _rollout(model, CacheMode.CACHED, MaskGITSampling(), seed=3)
    b = _rollout(model, CacheMode.CACHED, MaskGITSampling(), seed=3)
    c = _rollout(model, CacheMode.CACHED, MaskGITSampling(), seed=4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_temperature_zero_is_deterministic_argmax() -> None:
    model = tiny_model()
    greedy = MaskGITSampling(steps=1, temperature=0.0)
    a = _rollout(model, CacheMode.CACHED, greedy, seed=0, new=1)
    b = _rollout(model, CacheMode.CACHED, greedy, seed=99, new=1)
    assert torch.equal(a, b)
    # One step from an all-masked frame is the argmax of the window model's logits.
    frames, actions = context_and_actions(model, batch=2, context=2, new=1)
    tokens = torch.cat([frames, torch.zeros_like(frames[:, :1])], dim=1)  # (B, 3, h, w)
    mask = torch.zeros(tokens.shape, dtype=torch.bool)
    mask[:, -1] = True
    with torch.inference_mode():
        logits = model(tokens, torch.cat([actions, torch.zeros_like(actions[:, :1])], 1), embodiment="arm",
                       token_mask=mask).logits[:, -1]  # (B, S, V)
    assert torch.equal(a[:, 0], rearrange(logits.argmax(-1), "b (h w) -> b h w", h=4))


def test_top_k_one_equals_greedy() -> None:
    model = tiny_model()
    greedy = _rollout(model, CacheMode.CACHED, MaskGITSampling(steps=2, temperature=0.0), seed=0)
    top1 = _rollout(model, CacheMode.CACHED, MaskGITSampling(steps=2, temperature=1.5, top_k=1), seed=7)
    assert torch.equal(greedy, top1)


def test_batched_generation_equals_one_environment_at_a_time() -> None:
    model = tiny_model()
    greedy = MaskGITSampling(steps=2, temperature=0.0)
    batched = _rollout(model, CacheMode.CACHED, greedy, seed=0, batch=3)
    singles = [_rollout(model, CacheMode.CACHED, greedy, seed=0, batch=3)[i : i + 1] for i in range(3)]
    frames, actions = context_and_actions(model, batch=3, context=2, new=6)
    for i in range(3):
        engine = Engine(model, embodiment="arm", sampling=greedy, slide=Slide.EXACT)
        single = rollout(engine, frames[i : i + 1], actions[i : i + 1])
        assert torch.equal(batched[i : i + 1], single)
    assert torch.equal(torch.cat(singles), batched)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


@pytest.mark.parametrize("mode", list(CacheMode))
def test_long_rollout_keeps_memory_flat(mode: CacheMode) -> None:
    # 200 frames = 50x this model's 4-frame training window.
    model = tiny_model(num_blocks=1, width=32)  # memory, not modelling, is under test: keep it cheap
    frames, actions = context_and_actions(model, batch=2, context=2, new=1)
    engine = Engine(model, embodiment="arm", mode=mode, sampling=MaskGITSampling(steps=1))
    engine.reset(frames, actions[:, :1])
    g = torch.Generator().manual_seed(0)

    def state_bytes() -> int:
        if mode is CacheMode.CACHED:
            c = engine.cache
            return sum(t.nbytes for t in (*c.keys, *c.values, c.token_emb, c.action_emb))
        return engine.past.nbytes + engine.past_actions.nbytes

    for _ in range(20):  # fill the window and warm up the allocator
        engine.step(actions[:, -1], g)
    sizes = {state_bytes()}
    gc.collect()
    objects, rss = len(gc.get_objects()), _rss_bytes()
    for _ in range(180):
        engine.step(actions[:, -1], g)
        sizes.add(state_bytes())
    gc.collect()
    assert len(sizes) == 1  # the cache / kept window never grows
    assert len(gc.get_objects()) - objects < 100  # nothing accumulates per frame
    assert _rss_bytes() - rss < 32 * 2**20


def test_mar_step_reveals_each_token_once_and_feeds_it_back() -> None:
    # The reference forgot to update the mask; here step 2 must see step 1's draws as inputs.
    seen = []

    def predict(latents, masked):
        seen.append((latents.clone(), masked.clone()))
        return torch.zeros(1, 16, 8)

    class CountingHead:
        draws = 0

        def sample(self, z, temperature, generator, steps):
            CountingHead.draws += z.shape[0]
            return torch.full((z.shape[0], 2), float(len(seen)))

    out = unmask_latent_frame(predict, CountingHead(), batch=1, channels=2, grid=(4, 4),
                              sampling=MARSampling(steps=2), generator=torch.Generator().manual_seed(0),
                              device=torch.device("cpu"), dtype=torch.float32)
    assert CountingHead.draws == 16
    (_, mask1), (latents2, mask2) = seen
    assert mask1.all() and 0 < (~mask2).sum() < 16
    revealed = rearrange(~mask2, "b h w -> b 1 h w").expand_as(latents2)
    assert (latents2[revealed] == 1.0).all()  # step 1's draws are inputs of step 2
    assert (out[revealed] == 1.0).all() and (out[~revealed] == 2.0).all()  # and are kept


def test_engine_rejects_bad_window_and_mismatched_sampling() -> None:
    model = tiny_model()
    with pytest.raises(ConfigError, match="window of 9"):
        Engine(model, embodiment="arm", window=9)
    with pytest.raises(ConfigError, match="MARSampling"):
        Engine(model, embodiment="arm", sampling=MARSampling())
    with pytest.raises(ConfigError, match="reset"):
        Engine(model, embodiment="arm").step(torch.zeros(1, 3))


def test_stay_bias_lands_on_each_positions_previous_id_plain_and_factorized() -> None:
    from hma.model.objectives import add_stay_bias

    stay = torch.tensor([[3, 0, 7]])  # (B=1, S=3)
    plain = add_stay_bias(torch.zeros(1, 3, 8), stay, 2.0)  # (B, S, V)
    assert torch.equal(plain.argmax(-1), stay) and plain.sum() == 6.0
    factored = add_stay_bias(torch.zeros(1, 3, 2, 4), torch.tensor([[6, 1, 13]]), 2.0)  # ids as 2 digits of 4
    digits = factored.argmax(-1)  # (B, S, F)
    assert torch.equal(digits[..., 0] + 4 * digits[..., 1], torch.tensor([[6, 1, 13]]))
    assert factored.sum() == pytest.approx(6.0)  # bias / F on each of the F digits


@pytest.mark.parametrize("mode", list(CacheMode))
def test_an_overwhelming_stay_bias_copies_the_last_frame(mode: CacheMode) -> None:
    model = tiny_model()
    frames, actions = context_and_actions(model, batch=2, context=2, new=3)
    engine = Engine(model, embodiment="arm", mode=mode, sampling=MaskGITSampling(steps=2, stay_bias=1e4))
    made = rollout(engine, frames, actions, generator=torch.Generator().manual_seed(0))  # (B, 3, h, w)
    assert all(torch.equal(made[:, i], frames[:, -1]) for i in range(3))


@pytest.mark.parametrize("guidance", [0.0, 2.5])
def test_action_guidance_is_the_same_cached_and_uncached(guidance: float) -> None:
    model = tiny_model()
    sampling = MaskGITSampling(steps=3, temperature=1.0, guidance=guidance, stay_bias=0.5)
    cached = _rollout(model, CacheMode.CACHED, sampling, seed=2, new=2)
    uncached = _rollout(model, CacheMode.UNCACHED, sampling, seed=2, new=2)
    assert torch.equal(cached, uncached)


def test_zero_action_guidance_ignores_the_action_and_guidance_one_does_not() -> None:
    model = tiny_model()
    frames, actions = context_and_actions(model, batch=8, context=2, new=1)
    other = actions.clone()
    other[:, -1] = torch.randn(other[:, -1].shape, generator=torch.Generator().manual_seed(9)) * 5

    def first_frame(guidance: float, acts: torch.Tensor) -> torch.Tensor:
        engine = Engine(model, embodiment="arm", sampling=MaskGITSampling(temperature=0.0, guidance=guidance))
        return rollout(engine, frames, acts)

    assert torch.equal(first_frame(0.0, actions), first_frame(0.0, other))
    assert not torch.equal(first_frame(1.0, actions), first_frame(1.0, other))
    assert not torch.equal(first_frame(3.0, actions), first_frame(1.0, actions))


def test_bad_stay_bias_and_guidance_are_refused() -> None:
    for bad in ({"stay_bias": float("nan")}, {"guidance": -1.0}, {"guidance": float("inf")}):
        with pytest.raises(ConfigError, match="stay bias|action guidance"):
            MaskGITSampling(**bad)


def test_mar_draws_each_token_with_10_head_steps_by_default() -> None:
    """The default head steps (10, not the paper's 100): one noise prediction per step and revealed token."""
    model = tiny_model("continuous")
    calls = []
    predict = model.diffusion.predict_noise
    model.diffusion.predict_noise = lambda x, t, z: calls.append(x.shape[0]) or predict(x, t, z)
    frames, actions = context_and_actions(model, batch=1, context=2, new=1, seed=0)
    engine = Engine(model, embodiment="arm")  # the default sampling of a continuous model: MARSampling()
    engine.reset(frames[:, :2], actions[:, :1])
    engine.step(actions[:, 1], torch.Generator().manual_seed(0))
    assert len(calls) == 2 * 10 and sum(calls) == 10 * 16  # 2 unmasking steps x 10; each of 16 tokens 10 times
