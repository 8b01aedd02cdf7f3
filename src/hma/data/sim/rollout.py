"""How one episode's actions are chosen: scripted expert plus noise, interleaved with
smoothed random exploration.

A world model trained only on expert demonstrations learns one motion per scene and can
ignore its actions; trained only on random actions it never sees the task solved. So each
episode alternates segments of both, with a per-episode mix and noise level, and what
happens on screen depends on the action taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hma.data.sim.base import SimEnv


@dataclass(frozen=True)
class BehaviourMix:
    """Ranges the per-episode behaviour parameters are drawn from."""

    expert_fraction: tuple[float, float] = (0.4, 0.9)   # chance a segment follows the expert
    expert_noise: tuple[float, float] = (0.02, 0.25)    # Gaussian noise std, fraction of the action range
    segment_seconds: tuple[float, float] = (0.5, 2.0)
    smoothing_seconds: float = 0.3                      # time constant of the random exploration
    jitter_fraction: float = 0.0                        # chance a random segment is i.i.d. uniform, unsmoothed

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"expert_fraction": list(self.expert_fraction), "expert_noise": list(self.expert_noise),
                                  "segment_seconds": list(self.segment_seconds), "smoothing_seconds": self.smoothing_seconds}
        if self.jitter_fraction:
            out["jitter_fraction"] = self.jitter_fraction
        return out


@dataclass
class Episode:
    frames: np.ndarray          # (T, S, S, 3) uint8
    actions: np.ndarray         # (T, A) float32
    success: np.ndarray | None  # (T,) bool
    state: np.ndarray | None = None   # (T, S) float32, the state at each frame
    reward: np.ndarray | None = None  # (T,) float32, the reward of each row's action


def rollout(env: SimEnv, steps: int, control_hz: float, rng: np.random.Generator,
            mix: BehaviourMix = BehaviourMix()) -> Episode:
    """Run one episode of ``steps`` control steps; row t is the frame seen and the action taken at it."""
    env.reset(rng)
    low, high = env.action_low, env.action_high
    action_dim = len(low)
    p_expert = rng.uniform(*mix.expert_fraction)
    noise = rng.uniform(*mix.expert_noise) * (high - low) / 2
    decay = float(np.exp(-1.0 / (mix.smoothing_seconds * control_hz)))
    z = rng.uniform(-1.0, 1.0, action_dim)
    frames, actions, success, state, reward = [], [], [], [], []
    segment_left, use_expert, jitter = 0, True, False
    for _ in range(steps):
        if segment_left == 0:
            segment_left = max(1, round(rng.uniform(*mix.segment_seconds) * control_hz))
            use_expert = rng.uniform() < p_expert
            # Drawn only when asked for, so the default mix keeps its random stream (and its datasets).
            jitter = bool(mix.jitter_fraction) and not use_expert and rng.uniform() < mix.jitter_fraction
        segment_left -= 1
        # An AR(1) process with unit stationary variance: smooth, so a random segment
        # moves the robot somewhere instead of jittering in place.
        z = decay * z + np.sqrt(1 - decay**2) * rng.standard_normal(action_dim)
        if use_expert:
            action = env.expert() + noise * rng.standard_normal(action_dim)
        elif jitter:  # what a policy of i.i.d. uniform actions does: jitter in place
            action = rng.uniform(low, high)
        else:
            action = env.explore(np.tanh(z))
        action = np.clip(action, low, high).astype(np.float32)
        frames.append(env.frame())
        success.append(env.success())
        state.append(env.state())
        actions.append(action)
        env.step(action)
        reward.append(env.reward())
    has_success = all(s is not None for s in success)
    return Episode(
        frames=np.stack(frames),
        actions=np.stack(actions),
        success=np.array(success, dtype=bool) if has_success else None,
        state=np.stack(state).astype(np.float32),
        reward=np.asarray(reward, dtype=np.float32),
    )
