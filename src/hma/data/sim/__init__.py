"""Simulated multi-embodiment robot data: physics simulators driven by scripted experts
mixed with random exploration, rendered offscreen and written to the episode store.

- :mod:`hma.data.sim.registry`: embodiment name -> :class:`EmbodimentSpec`.
- :mod:`hma.data.sim.suite`: named suites (``tiny``, ``default``) and :func:`generate_suite`.
- :mod:`hma.data.sim.rollout`: how one episode's actions are chosen.
- one module per simulator (``robosuite_env``, ``metaworld_env``, ``gym_env``, ``pusht_env``),
  each importing its simulator lazily so the registry itself needs none of them.
"""
