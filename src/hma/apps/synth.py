"""Synthetic trajectories from the world model, written as a native dataset (paper sec. 5:
generated trajectories added to 10 real demos raised Robomimic success from 82% to 100%).

Each synthetic episode starts from the first frame of a real episode and follows either
that episode's recorded actions with Gaussian noise, or an image policy acting on the
generated frames. Episodes are generated ``batch_size`` at a time in one
:class:`~hma.envs.WorldModelVectorEnv`.

The native store has one row per control step while the model makes one frame per
``k`` control steps, so each generated frame is held for its ``k`` rows, next to the k
actions of its chunk; training windows (stride k) then see exactly the generated frames
and chunks. Writing goes through :class:`~hma.data.store.StoreWriter`, so a killed run
resumes at the batch of the first unwritten episode and ends with what an uninterrupted
run writes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hma.apps.policy import ExpertSpec, parse_policy, policy_action
from hma.data.store import METADATA_FILE, EpisodeStore, StoreWriter
from hma.data.windows import split_episodes
from hma.errors import ConfigError, DataError
from hma.envs.actions import chunk_shape
from hma.envs.context import episode_context
from hma.run import RunLike, open_run, run_dataset
from hma.envs.vector_env import WorldModelVectorEnv


def synthesize(run: RunLike, embodiment: str, *, episodes: int, out: str | Path, policy: str | None = None,
               perturb: float = 0.1, steps: int | None = None, dataset: str | Path | EpisodeStore | None = None,
               source_episodes: Sequence[int] | None = None, seed: int = 0, batch_size: int = 8,
               sampling: Any = None, device: str | None = None) -> EpisodeStore:
    """Generate ``episodes`` trajectories into the dataset folder ``out`` (resumable) and return it.

    ``source_episodes``: the real episodes whose first frames (and actions) are used,
    cycled (default: the training episodes of ``dataset``). ``perturb``: noise std as a
    fraction of each action dimension's half range in the dataset. ``device``: as
    :class:`hma.envs.WorldModelEnv`'s.
    """
    if episodes < 1:
        raise ConfigError(f"episodes={episodes} is invalid, expected an integer >= 1")
    if perturb < 0:
        raise ConfigError(f"perturb={perturb} is invalid, expected a number >= 0")
    loaded = open_run(run, device)
    if isinstance(dataset, EpisodeStore):
        store = dataset
    else:
        path = dataset if dataset is not None else run_dataset(loaded, embodiment)
        if path is None:
            raise DataError(f"the run records no dataset of {embodiment!r} on disk; pass --dataset with real episodes to start from")
        store = EpisodeStore(path)
    sources = list(source_episodes) if source_episodes is not None else split_episodes(store.num_episodes)[0]
    if not sources:
        raise DataError(f"dataset {store.root} has no episodes to start synthetic ones from")
    # Marked synthetic, with the run it came from, so that no one takes it for the simulator's data.
    info = replace(store.info, synthetic=True, extra={**store.info.extra, "synthetic": {
        "run": str(loaded.path), "run_weights_sha256": loaded.weights_sha256,
        "policy": policy or f"recorded actions + noise {perturb:g}",
        "source_dataset": str(store.root), "seed": seed, "steps": steps, "batch_size": batch_size}})
    if (Path(out) / METADATA_FILE).exists():
        return _finished(EpisodeStore(out), info, episodes)
    writer = StoreWriter(out, info)
    venv, image_policy = None, None
    # A killed run may have written part of a batch: redo that whole batch (same episodes,
    # same seed, same batch size, so the same frames) and keep only its missing episodes.
    staged = writer.num_staged
    from hma.progress import bar as progress_bar

    bar = progress_bar(total=episodes, initial=staged, desc=f"synth {embodiment}", unit="ep", leave=False)
    for first in range(staged - staged % batch_size, episodes, batch_size):
        ids = list(range(first, min(first + batch_size, episodes)))
        if venv is None or venv.num_envs != len(ids):
            venv = WorldModelVectorEnv(loaded, embodiment, len(ids), dataset=store, context_frames=1,
                                       max_episode_steps=10 ** 9, sampling=sampling)
        if policy is not None and image_policy is None:
            image_policy = parse_policy(policy, run=loaded, embodiment=embodiment, space=venv.single_action_space, dataset=store)
            if isinstance(image_policy, ExpertSpec):
                raise ConfigError(f"policy {policy!r} needs the real simulator's state; synthetic data takes an "
                                  f"image policy (bc:CHECKPOINT, world-model, random) or recorded actions")
        batch = _generate(venv, store, [sources[i % len(sources)] for i in ids], image_policy,
                          steps=steps, perturb=perturb, seed=seed * 1_000_003 + first)
        for i, (frames, actions, states) in zip(ids, batch):
            if i >= staged:
                # The state the model reads out, where it is the one the dataset records.
                same = states is not None and list(info.state_names) == venv.core.rollout.state_names
                writer.add_episode(frames, actions, state=states if same else None)
                bar.update(1)
    bar.close()
    return writer.finalize()


def _finished(done: EpisodeStore, info: Any, episodes: int) -> EpisodeStore:
    """A finished dataset from an identical earlier call, reused; anything else is refused."""
    if done.info.extra.get("synthetic") != info.extra["synthetic"] or done.num_episodes != episodes:
        raise DataError(f"dataset {done.root} already exists with {done.num_episodes} synthetic episodes of "
                        f"{done.info.extra.get('synthetic')}, expected {episodes} of {info.extra['synthetic']}; "
                        f"pass another output folder or delete it")
    return done


def _generate(venv: WorldModelVectorEnv, store: EpisodeStore, sources: list[int], image_policy, *, steps: int | None,
              perturb: float, seed: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """One batch: per episode, control-rate frames (T*k, H, W, 3), actions (T*k, A) and, when
    the model reads out a state, states (T*k, S) (the source's recorded state at frame 0)."""
    space = venv.single_action_space
    k, a = chunk_shape(space)
    rng = np.random.default_rng(seed)
    recorded = []
    for e in sources:
        acts = np.asarray(store.episode(e)["actions"], np.float32)
        n = len(acts) // k
        recorded.append(acts[: n * k].reshape(n, k, a))  # (n, k, A) chunks
    length = steps or min(len(r) for r in recorded)
    if image_policy is None and length > min(len(r) for r in recorded):
        raise ConfigError(f"steps={length} is longer than the shortest source episode ({min(len(r) for r in recorded)} frames)")
    contexts = [episode_context(store, e, num_frames=1, chunk=k) for e in sources]
    obs, _ = venv.reset(seed=seed, options={"context": [{"frames": c.frames, "state": c.state} for c in contexts]})
    rollout = venv.core.rollout
    policies = [image_policy() for _ in sources] if image_policy is not None else None
    if policies is not None:
        for i, p in enumerate(policies):
            p.reset(seed=seed + i)
    half_range = (space.high - space.low) / 2  # (k, A), or (A,) for a chunk of one
    frames, chunks, states = [obs], [], [rollout.states]
    for t in range(length):
        if policies is not None:
            now = [None] * len(obs) if rollout.states is None else rollout.states
            act = np.stack([policy_action(p, o, s, where="the world model") for p, o, s in zip(policies, obs, now)])  # (B, k, A)
        else:
            act = np.stack([r[t] for r in recorded]) + perturb * half_range * rng.standard_normal((len(sources), k, a))
        act = np.clip(act, space.low, space.high).astype(np.float32)
        obs, *_ = venv.step(act)
        frames.append(obs)
        chunks.append(act)
        states.append(rollout.states)
    video = np.stack(frames[:-1], axis=1)  # (B, T, H, W, 3) the frame each chunk was taken at
    actions = np.stack(chunks, axis=1)  # (B, T, k, A)
    state = None if states[0] is None else np.stack(states[:-1], axis=1)  # (B, T, S)
    return [(np.repeat(v, k, axis=0), act.reshape(-1, a), None if state is None else np.repeat(state[i], k, axis=0))
            for i, (v, act) in enumerate(zip(video, actions))]
