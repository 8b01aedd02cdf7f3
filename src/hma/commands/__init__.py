"""Command groups of the ``hma`` CLI; each module exposes ``register(subparsers)``."""
