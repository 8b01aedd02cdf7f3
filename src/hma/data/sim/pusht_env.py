"""PushT (gym-pusht, pymunk 2-D physics, 10 Hz): the action is the target position of
the round pusher in pixels (0..512); success when the T covers 95% of its goal."""

from __future__ import annotations

import numpy as np

_GOAL_XY = np.array([256.0, 256.0])  # gym-pusht's fixed goal pose is (256, 256, pi/4)
# The pusher is drawn with this radius (of 512) instead of its physical 15: at 64x64 that
# is 4.5 px instead of 2, which an image tokenizer would erase. Only the drawing grows.
_DRAWN_PUSHER_RADIUS = 36
_PUSHER_RGB = (20, 50, 200)


class PushTSim:
    action_low = np.array([0.0, 0.0])
    action_high = np.array([512.0, 512.0])
    state_names = ["agent_x", "agent_y"]  # the pusher's position, LeRobot's PushT observation.state

    def __init__(self, image_size: int) -> None:
        import gymnasium as gym
        import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)

        # frame() draws the pixels itself, so the env's observation skips rendering.
        self._env = gym.make("gym_pusht/PushT-v0", obs_type="environment_state_agent_pos")
        self._image_size = image_size
        self._obs: dict = {}
        self._info: dict = {}
        self._success = False
        self._reward = 0.0

    def reset(self, rng: np.random.Generator) -> None:
        self._obs, self._info = self._env.reset(seed=int(rng.integers(2**31)))
        self._success = False
        self._reward = 0.0

    def step(self, action: np.ndarray) -> None:
        self._obs, reward, _, _, self._info = self._env.step(action)
        self._success = bool(self._info["is_success"])
        self._reward = float(reward)

    def state(self) -> np.ndarray:
        return np.asarray(self._obs["agent_pos"], dtype=np.float32)

    def reward(self) -> float:
        return self._reward

    def frame(self) -> np.ndarray:
        """gym-pusht's own 512x512 drawing with an enlarged pusher under the T, box-filtered
        down: gym-pusht's bilinear resize reads only a few source pixels per output pixel at
        512 -> 64, so edges alias. Never the action marker of gym-pusht's visualisation: the
        video must not show the action it is paired with."""
        import pygame
        from gym_pusht.envs.pymunk_override import DrawOptions, to_pygame

        env = self._env.unwrapped
        screen = env._draw()  # goal, walls, pusher and T
        pygame.draw.circle(screen, _PUSHER_RGB, to_pygame(env.agent.position, screen), _DRAWN_PUSHER_RADIUS)
        env.space.debug_draw(DrawOptions(screen))  # the T (and the physical pusher) over it again
        small = pygame.transform.smoothscale(screen, (self._image_size, self._image_size))
        return np.ascontiguousarray(pygame.surfarray.array3d(small).transpose(1, 0, 2))  # (S, S, 3), rows are y

    def success(self) -> bool | None:
        return self._success

    def expert(self) -> np.ndarray:
        """Go behind the T (seen from the goal), then push it through its centre towards the goal."""
        agent = np.asarray(self._obs["agent_pos"], dtype=np.float64)
        block = np.asarray(self._info["block_pose"][:2], dtype=np.float64)
        push_dir = _GOAL_XY - block
        push_dir /= np.linalg.norm(push_dir) + 1e-6
        across = np.array([-push_dir[1], push_dir[0]])
        rel = agent - block
        along, lateral = float(rel @ push_dir), float(rel @ across)
        if along < -15.0 and abs(lateral) < 25.0:
            target = block + 40.0 * push_dir  # lined up behind the T: push through it
        elif along > -40.0 and np.linalg.norm(rel) < 110.0:
            # Beside or in front of the T: go around it on the side we are on.
            target = block + 90.0 * np.sign(lateral or 1.0) * across - 50.0 * push_dir
        else:
            target = block - 70.0 * push_dir
        return np.clip(target, self.action_low, self.action_high)

    def explore(self, z: np.ndarray) -> np.ndarray:
        # Random targets near the pusher: a smooth wander instead of teleport-like jumps.
        agent = np.asarray(self._obs["agent_pos"], dtype=np.float64)
        return np.clip(agent + 80.0 * z, self.action_low, self.action_high)

    def close(self) -> None:
        self._env.close()
