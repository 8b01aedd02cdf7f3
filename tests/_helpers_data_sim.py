"""A small simulated suite shared by the data-sim and data-inspect tests (generated once per process)."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

from hma.data.sim.registry import get_embodiment  # noqa: E402
from hma.data.sim.suite import generate_dataset  # noqa: E402

# 4 embodiments from 3 simulators, action dims 2/4/6, rates 10 and 20 Hz; no robosuite
# (several seconds just to build its model).
SMALL_EMBODIMENTS = ("gym_reacher", "gym_halfcheetah", "metaworld_push_sawyer", "pusht")
SMALL_EPISODES = 2
SMALL_STEPS = 12
SMALL_IMAGE = 32


@functools.cache
def small_suite() -> Path:
    root = Path(tempfile.mkdtemp(prefix="hma_test_sim_"))
    for name in SMALL_EMBODIMENTS:
        generate_dataset(get_embodiment(name), root / name, episodes=SMALL_EPISODES, episode_steps=SMALL_STEPS,
                         image_size=SMALL_IMAGE, seed=0)
    return root
