"""Meta-World embodiments: the Sawyer arm (4-D: end-effector xyz delta + grip) with the
benchmark's own scripted expert policies and success flags."""

from __future__ import annotations

import numpy as np

from hma.data.sim.base import scale_to_box
from hma.data.sim.render import CameraSpec, FastRenderer

# Meta-World's corner cameras come out upside down or rolled; a free camera in front of
# the table shows the arm and objects the right way up.
_CAMERA = CameraSpec(lookat=(0.0, 0.65, 0.15), distance=1.1, azimuth=135.0, elevation=-30.0)


class MetaWorldSim:
    def __init__(self, image_size: int, *, task: str, policy: str, frame_skip: int) -> None:
        import metaworld
        import metaworld.policies

        benchmark = metaworld.MT1(task, seed=0)
        self.env = benchmark.train_classes[task]()
        self.env.set_task(benchmark.train_tasks[0])
        # The model runs at 0.0025 s per step; frame_skip sets the control rate (20 -> 20 Hz).
        self.env.frame_skip = frame_skip
        self._policy = getattr(metaworld.policies, policy)()
        self.action_low = self.env.action_space.low.astype(np.float64)
        self.action_high = self.env.action_space.high.astype(np.float64)
        self._renderer = FastRenderer(self.env.model, image_size, _CAMERA)
        self._obs = None
        self._success = False

    def reset(self, rng: np.random.Generator) -> None:
        # A task's object and goal positions come from _last_rand_vec when it is frozen;
        # drawing it here from our own generator makes every episode reproducible.
        space = self.env._random_reset_space
        self.env._last_rand_vec = rng.uniform(space.low, space.high)
        self._obs, _ = self.env.reset()
        self._success = False

    def step(self, action: np.ndarray) -> None:
        self._obs, _, _, _, info = self.env.step(action)
        self._success = bool(info["success"])

    def frame(self) -> np.ndarray:
        return self._renderer.render(self.env.data)

    def success(self) -> bool | None:
        return self._success

    def expert(self) -> np.ndarray:
        return np.asarray(self._policy.get_action(self._obs), dtype=np.float64)

    def explore(self, z: np.ndarray) -> np.ndarray:
        return scale_to_box(z, self.action_low, self.action_high)

    def close(self) -> None:
        self._renderer.close()
        self.env.close()
