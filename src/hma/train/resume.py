"""What ``--resume`` may not change: the data and the settings a run was started with.

A resumed run continues the recorded one, step for step, only on the same data with the same
settings; with others it would train a different run under the recorded one's name, and its
next checkpoint would rewrite the run's ``config.json`` to say so. :func:`check_resume`
compares the options with the run's recorded ``train`` section before anything is read or
written, and refuses the first difference in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hma.config import RECIPE
from hma.errors import ConfigError

# Options that must equal the recorded ones (None is a value of its own, e.g. no EMA).
FIXED = ("setting", "seed", "batch_size", "lr", "weight_decay", "warmup", "grad_clip", "ema", "tau", "holdout",
         "train_fraction", "steps", "minutes", "freeze_trunk", "model")
# Options a resumed run takes from its own files: refused only when both are set and differ
# (a run started from the Python API records preset "tiny" where the CLI records none).
WHEN_GIVEN = ("preset", "config_file", "injection", "init_from")
# What an option is when nobody gave it: hma train passes the recipe's preset unless told otherwise.
UNGIVEN = {"preset": RECIPE.preset}
# Options of the model's shape: refused when given and unlike the run's model config.
MODEL_FIELDS = ("num_frames", "frame_hz")
PATHS = ("config_file", "init_from")  # the same file named another way is the same option
FLAGS = {"config_file": "--config", "init_from": "--from", "corrupt_max": "--context-corruption"}


def _flag(name: str) -> str:
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)


def _resolved(paths: list[str]) -> list[str]:
    return [str(Path(p).resolve()) for p in paths]


def _paths(value: Any) -> list[str] | None:
    """A recorded list of paths, or None when it is missing or not one (an older or damaged record)."""
    return list(value) if isinstance(value, list) and all(isinstance(p, str) for p in value) else None


def _differs(name: str, now: Any, was: Any) -> ConfigError:
    flag = _flag(name)
    return ConfigError(f"{flag} {_show(now)} differs from the run's {flag.lstrip('-')} {_show(was)}; "
                       "resume with the run's settings or start a new run")


def check_resume(options: dict[str, Any], run_config: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` naming the first of ``options`` (a ``TrainConfig`` as a dict)
    that differs from what the run's ``config.json`` records (its ``train`` options and its
    ``model``). Data folders are compared as absolute paths (the run records both as given and
    resolved); a value the run does not record (an older run) is not compared."""
    recorded, model = run_config.get("train"), run_config.get("model")
    recorded = recorded if isinstance(recorded, dict) else {}
    data, given = [str(d) for d in options["data"]], _paths(recorded.get("data"))
    then = _paths(recorded.get("data_resolved")) or (None if given is None else _resolved(given))
    if then is not None and _resolved(data) != then:
        raise ConfigError(f"--data {_show(data)} differs from the run's data {_show(given or then)}; "
                          "resume with the run's data or start a new run")
    for name in FIXED + WHEN_GIVEN:
        if name not in recorded:
            continue
        now, was = options[name], recorded[name]
        if name in WHEN_GIVEN and (now is None or was is None or now == UNGIVEN.get(name)):
            continue
        if name in PATHS and isinstance(was, str) and _resolved([str(now)]) == _resolved([was]):
            continue
        if now != was:
            raise _differs(name, now, was)
    for name in MODEL_FIELDS:
        if isinstance(model, dict) and options[name] is not None and name in model and options[name] != model[name]:
            raise _differs(name, options[name], model[name])
    for name, value in (options.get("model_overrides") or {}).items():  # --num-blocks, the objective's options
        if isinstance(model, dict) and name in model and value != model[name]:
            raise _differs(name, value, model[name])
