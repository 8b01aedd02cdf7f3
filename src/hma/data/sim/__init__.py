"""Simulated multi-embodiment robot data: physics simulators driven by scripted experts
mixed with random exploration, rendered offscreen and written to the episode store.

- :mod:`hma.data.sim.registry`: embodiment name -> :class:`SimEmbodiment`.
- :mod:`hma.data.sim.suite`: named suites (``tiny``, ``default``, ``long``, ``pretrain``) and
  :func:`generate_suite`, in one process or a pool of them (``workers``).
- :mod:`hma.data.sim.rollout`: how one episode's actions are chosen.
- one module per simulator (``robosuite_env``, ``metaworld_env``, ``gym_env``, ``pusht_env``),
  each importing its simulator lazily so the registry itself needs none of them.
"""

import os as _os

# Simulators render offscreen on machines without a display. MuJoCo picks its GL
# backend when first imported and defaults to GLFW, which needs a window system; EGL
# works headless (software or GPU). Users can still choose osmesa or glfw themselves.
_os.environ.setdefault("MUJOCO_GL", "egl")
_os.environ.setdefault("PYOPENGL_PLATFORM", _os.environ["MUJOCO_GL"])
