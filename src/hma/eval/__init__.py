"""hma.eval: measuring a run: metrics (:mod:`hma.eval.metrics`), the evaluation runner
(:func:`evaluate`, ``hma eval``), reports, and the checks and card of a shipped model
(:mod:`hma.eval.card`). The experiments built on it live in :mod:`hma.experiments`.

``evaluate`` and ``EvalOptions`` are imported on first use so ``import hma.eval`` stays light.
"""

__all__ = ["EvalOptions", "evaluate"]


def __getattr__(name: str):
    if name in __all__:
        from hma.eval import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'hma.eval' has no attribute {name!r}")
