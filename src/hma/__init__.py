"""hma: action-video world models learned from heterogeneous robot data with masked autoregression."""

__version__ = "0.1.0"


def load(run, **kwargs):
    """Load a trained run folder: ``hma.load(RUN) -> LoadedRun(model, tokenizer, embodiments)``.

    Imported lazily so ``import hma`` stays light (no torch until a model is needed).
    """
    from hma.run import load as _load

    return _load(run, **kwargs)
