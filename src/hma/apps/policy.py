"""Policies as the apps see them, and the names that pick them on the command line.

A policy acts once per world-model frame and returns one action chunk in the embodiment's
raw units: (chunk, A), or (A,) as the env's Box has it for a chunk of one (either layout is
taken for that). Two kinds:

- **Image policies** (``act(frame)``): a behaviour-cloning checkpoint, the world model's
  own action head (:class:`hma.envs.WorldModelPolicy`), or random actions. They run
  closed-loop in the real simulator and in the world model alike.
- **Scripted experts** read the simulator's true state, which a generated video does not
  have. They run closed-loop (at the control rate) in the real simulator only; in the
  world model the action chunks they took there are replayed from the same initial frame.

Names: ``expert:NOISE`` (Gaussian noise std as a fraction of the half action range),
``random``, ``bc:CHECKPOINT``, ``world-model``, and ``MODULE:FACTORY``: a Python entry point
whose factory, called without arguments, returns a policy object. That object may be an
image policy (``act``/``reset``) or follow LeRobot's protocol (``select_action(batch)``
returning one action per control step, ``reset()``); the latter is wrapped by
:class:`LeRobotPolicyAdapter`, so a LeRobot policy runs in hma without hma depending on
the lerobot package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np
from gymnasium import spaces

from hma.envs.actions import chunk_shape
from hma.errors import ConfigError
from hma.run import RunLike


@runtime_checkable
class ImagePolicy(Protocol):
    """hma's own policy protocol, and a ``name`` (a user's policy without one is given its
    command-line name). A policy that also reads the state declares ``wants_state = True`` and
    takes ``act(frame, state=...)``; one that does not declare it reads frames only."""

    def reset(self, seed: int | None = None) -> None: ...

    def act(self, frame: np.ndarray) -> np.ndarray: ...  # (H, W, 3) uint8 -> (chunk, A) or (A,) float32


@runtime_checkable
class LeRobotPolicy(Protocol):
    """LeRobot's policy protocol: one action per control step from an observation batch."""

    def reset(self) -> None: ...

    def select_action(self, batch: dict) -> Any: ...


def wants_state(policy: ImagePolicy) -> bool:
    """Whether ``policy`` reads the state beside the frame (a user's policy need not say)."""
    return bool(getattr(policy, "wants_state", False))


@dataclass(frozen=True)
class ExpertSpec:
    """The simulator's scripted expert with Gaussian action noise (privileged: needs the true state)."""

    noise: float

    @property
    def name(self) -> str:
        return f"expert:{self.noise:g}"


class RandomPolicy:
    """Uniform random chunks inside the action Box (the worst reference policy)."""

    def __init__(self, space: spaces.Box, name: str = "random") -> None:
        self.space = space
        self.name = name
        self._rng = np.random.default_rng(0)

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, frame: np.ndarray) -> np.ndarray:
        return self._rng.uniform(self.space.low, self.space.high).astype(np.float32)


PolicyFactory = Callable[[], ImagePolicy]

# The image key of LeRobot's single-camera observations (what its env preprocessing
# makes of a gym env's ``pixels``), and its state key (of ``agent_pos``).
LEROBOT_IMAGE_KEY = "observation.image"
LEROBOT_STATE_KEY = "observation.state"


def policy_action(policy: ImagePolicy, frame: np.ndarray, state: np.ndarray | None, *, where: str) -> np.ndarray:
    """One chunk from ``policy``: the frame, and the state too for a policy that reads one
    (``wants_state``); ``where`` names the state's source in the error when it has none."""
    if not wants_state(policy):
        return policy.act(frame)
    if state is None:
        raise ConfigError(f"policy {policy.name!r} reads a state ({LEROBOT_STATE_KEY}), but {where} gives none; "
                          "expected a run trained on data that records a state, or a policy that reads images only")
    return policy.act(frame, state=state)


class LeRobotPolicyAdapter:
    """A policy with LeRobot's ``select_action(batch)``/``reset()`` as an image policy.

    Each world-model frame covers ``chunk`` control steps, so ``act(frame)`` asks the policy
    ``chunk`` times, each time with that frame, and stacks the answers into one chunk. The
    frame goes in as LeRobot's policies expect it: float32 (1, 3, H, W) in [0, 1], under every
    image key the policy declares in ``config.input_features`` (else
    ``observation.image``). A policy that declares ``observation.state`` also gets the state
    (float32 (1, S)): in the real simulator the simulator's own, in the world model the one
    its state head reads out of each generated frame (:attr:`wants_state`).
    """

    def __init__(self, policy: Any, space: spaces.Box, name: str) -> None:
        self.policy = policy
        self.space = space
        self.name = name
        features = getattr(getattr(policy, "config", None), "input_features", None) or {}
        keys = [k for k in features if "image" in k]
        self.image_keys = keys or [LEROBOT_IMAGE_KEY]
        self.wants_state = LEROBOT_STATE_KEY in features

    def reset(self, seed: int | None = None) -> None:
        self.policy.reset()

    def act(self, frame: np.ndarray, state: np.ndarray | None = None) -> np.ndarray:
        import torch

        image = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float() / 255.0  # (1, 3, H, W)
        param = next(self.policy.parameters(), None) if isinstance(self.policy, torch.nn.Module) else None
        device = param.device if param is not None else None  # LeRobot's policies are modules: feed them on their device
        batch = {key: image.to(device) for key in self.image_keys}
        if self.wants_state:
            if state is None:
                raise ConfigError(f"policy {self.name!r} reads {LEROBOT_STATE_KEY}, but no state was given")
            batch[LEROBOT_STATE_KEY] = torch.as_tensor(np.asarray(state, np.float32)).reshape(1, -1).to(device)
        chunk, action_dim = chunk_shape(self.space)
        steps = []
        for _ in range(chunk):
            with torch.inference_mode():
                action = self.policy.select_action(dict(batch))
            action = np.asarray(torch.as_tensor(action).detach().cpu(), dtype=np.float32).reshape(-1)
            if action.shape != (action_dim,):
                raise ConfigError(f"policy {self.name!r} returned an action of {action.size} values, expected "
                                  f"{action_dim} (one control step of this embodiment)")
            steps.append(action)
        return np.clip(np.stack(steps).reshape(self.space.shape), self.space.low, self.space.high).astype(np.float32)


def load_entry_point(text: str, space: spaces.Box) -> PolicyFactory:
    """``MODULE:FACTORY`` -> a factory of image policies (LeRobot-protocol objects adapted)."""
    import importlib
    import os
    import sys

    module_name, _, attr = text.partition(":")
    if os.getcwd() not in sys.path:  # as `python -c` would: a module beside the user resolves
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"policy {text!r}: module {module_name!r} cannot be imported ({e}); expected "
                          "MODULE:FACTORY with MODULE on the Python path") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"policy {text!r}: {module_name} has no callable {attr!r}; expected MODULE:FACTORY")

    def make() -> ImagePolicy:
        policy = factory()
        if isinstance(policy, ImagePolicy):
            if not hasattr(policy, "name"):
                policy.name = text
            return policy
        if isinstance(policy, LeRobotPolicy):
            return LeRobotPolicyAdapter(policy, space, text)
        raise ConfigError(f"policy {text!r}: the factory returned {type(policy).__name__}, expected an object with "
                          "act(frame) and reset(), or LeRobot's select_action(batch) and reset()")

    return make


def parse_policy(text: str, *, run: RunLike, embodiment: str, space: spaces.Box, dataset: Any = None) -> ExpertSpec | PolicyFactory:
    """``expert:0.3`` -> :class:`ExpertSpec`; otherwise a factory of fresh image-policy instances."""
    kind, _, arg = text.partition(":")
    if kind == "expert":
        try:
            noise = float(arg or 0.0)
        except ValueError:
            raise ConfigError(f"policy {text!r} has noise {arg!r}, expected a number as in expert:0.3") from None
        if noise < 0:
            raise ConfigError(f"policy {text!r} has negative noise, expected expert:NOISE with NOISE >= 0")
        return ExpertSpec(noise)
    if kind == "random":
        return lambda: RandomPolicy(space, text)
    if kind == "bc":
        if not arg:
            raise ConfigError(f"policy {text!r} names no checkpoint, expected bc:PATH")
        from hma.apps.bc_policy import load_bc_policy

        return lambda: load_bc_policy(arg, name=text)
    if kind == "world-model":
        from hma.envs import WorldModelPolicy

        return lambda: WorldModelPolicy(run, embodiment, dataset=dataset, name=text)
    if arg and kind.replace(".", "").replace("_", "").isalnum():
        return load_entry_point(text, space)
    raise ConfigError(f"policy {text!r} is unknown, expected expert:NOISE, random, bc:CHECKPOINT, world-model "
                      "or MODULE:FACTORY")
