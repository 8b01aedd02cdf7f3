"""hma.eval: metrics (:mod:`hma.eval.metrics`), the evaluation runner (:func:`evaluate`,
``hma eval``), reports, and the experiment recipes (``hma experiment``).

``evaluate`` and ``EvalOptions`` are imported on first use so ``import hma.eval`` stays light.
"""

__all__ = ["EvalOptions", "evaluate"]


def __getattr__(name: str):
    if name in __all__:
        from hma.eval import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'hma.eval' has no attribute {name!r}")
