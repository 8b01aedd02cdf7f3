"""hma: action-video world models learned from heterogeneous robot data with masked autoregression."""

__version__ = "0.1.0"
