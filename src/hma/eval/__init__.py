"""hma.eval: metrics (:mod:`hma.eval.metrics`), the evaluation runner (:func:`evaluate`,
``hma eval``), reports, and the experiment recipes (``hma experiment``).

``evaluate`` is imported on first use so ``import hma.eval`` stays light.
"""

__all__ = ["evaluate"]


def __getattr__(name: str):
    if name == "evaluate":
        from hma.eval.runner import evaluate

        return evaluate
    raise AttributeError(f"module 'hma.eval' has no attribute {name!r}")
