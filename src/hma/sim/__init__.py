"""hma.sim: the world model as a simulator (gymnasium env, vector env, policy mode, play server)."""

from hma.sim.env import WorldModelEnv
from hma.sim.policy import WorldModelPolicy
from hma.sim.rollout import WorldModelRollout
from hma.sim.vector_env import WorldModelVectorEnv

__all__ = ["WorldModelEnv", "WorldModelPolicy", "WorldModelRollout", "WorldModelVectorEnv"]
