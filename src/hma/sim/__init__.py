"""hma.sim: the world model as a simulator (gymnasium env, vector env, policy mode, play server)."""

import gymnasium

from hma.sim.env import WorldModelEnv
from hma.sim.policy import WorldModelPolicy
from hma.sim.rollout import WorldModelRollout
from hma.sim.vector_env import WorldModelVectorEnv

# gymnasium.make("hma/WorldModel-v0", run=RUN, embodiment=NAME) builds a WorldModelEnv.
gymnasium.register(id="hma/WorldModel-v0", entry_point="hma.sim.env:WorldModelEnv")

__all__ = ["WorldModelEnv", "WorldModelPolicy", "WorldModelRollout", "WorldModelVectorEnv"]
