"""hma.envs: the world model as a simulator (gymnasium env, vector env, policy mode, play server)."""

import gymnasium

from hma.envs.env import WorldModelEnv
from hma.envs.policy import WorldModelPolicy
from hma.envs.rollout import WorldModelRollout
from hma.envs.vector_env import WorldModelVectorEnv

# gymnasium.make("hma/WorldModel-v0", run=RUN, embodiment=NAME) builds a WorldModelEnv;
# gymnasium.make_vec(..., num_envs=N) the batched WorldModelVectorEnv (one model call per step).
gymnasium.register(id="hma/WorldModel-v0", entry_point="hma.envs.env:make_registered",
                   vector_entry_point="hma.envs.vector_env:WorldModelVectorEnv", max_episode_steps=100)

__all__ = ["WorldModelEnv", "WorldModelPolicy", "WorldModelRollout", "WorldModelVectorEnv"]
