"""``hma.load(RUN)``: a finished run in memory, ready for generation, and what its config records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hma.config import EmbodimentSpec, ModelConfig, RunKind, Setting, TokenKind
from hma.data.store import METADATA_FILE, find_datasets
from hma.data.windows import HOLDOUT
from hma.device import resolve_device
from hma.errors import CheckpointError, HmaError
from hma.io import read_json
from hma.run import files
from hma.run.kinds import build_model
from hma.run.pretrained import DEFAULT_RUN, resolve_run, starts_dataset


@dataclass
class LoadedRun:
    model: nn.Module  # in eval mode
    tokenizer: object  # hma.tokenizer.Tokenizer
    embodiments: dict[str, EmbodimentSpec]  # name -> spec, incl. .normalizer
    config: dict  # the run's config.json
    path: Path

    # What config.json records, with its defaults in one place.
    @property
    def kind(self) -> RunKind:
        """What the run trained (``hma train --model``)."""
        return RunKind(self.config.get("kind", RunKind.HMA.value))

    @property
    def token_kind(self) -> TokenKind:
        """The tokens the model works on."""
        return TokenKind(self.config["model"]["kind"])

    @property
    def frame_hz(self) -> float:
        return float(self.config["model"]["frame_hz"])

    @property
    def setting(self) -> str:
        """The training setting (:class:`hma.config.Setting`): what the model was shown of actions."""
        return self.config.get("train", {}).get("setting", Setting.FULL.value)

    @property
    def sampling(self) -> dict[str, float]:
        """The sampling the run recommends (a shipped run records its measured best): any of
        ``logit_adjustment`` and ``action_guidance`` (:func:`hma.sampling.generators.frame_generator`)."""
        return dict(self.config.get("sampling") or {})

    @property
    def weights_sha256(self) -> str | None:
        """The checksum of ``model.safetensors`` that config.json records: what identifies the run's
        weights wherever its folder is; None for a run that records none."""
        return self.config.get(files.WEIGHTS_SHA256)

    @property
    def holdout(self) -> float:
        """The fraction of each dataset's episodes held out in training (:func:`hma.data.windows.split_episodes`)."""
        return float(self.config.get("train", {}).get("holdout", HOLDOUT))


# What the apps, envs and experiments take as a run: one already loaded, or what :func:`load` opens.
RunLike = LoadedRun | str | Path


def load(run: str | Path = DEFAULT_RUN, *, device: str | torch.device | None = None) -> LoadedRun:
    """Load ``RUN/model.safetensors`` + ``config.json`` and the run's own tokenizer copy, both on ``device``
    (:func:`hma.device.resolve_device`: default the GPU when there is one, else the CPU, as the envs and apps).

    ``run`` is a run folder, the name of a run shipped in the package (:mod:`hma.run.pretrained`;
    the default, ``hma-tiny``), or the Hub name (``org/name``) of a repo that holds one
    (:mod:`hma.hub`); a local path of that name wins."""
    from hma.tokenizer import load_tokenizer

    device = resolve_device(device)  # before reading anything: a bad device is the user's first error
    run = resolve_run(run)
    config = files.read_run_config(run)
    model_config, model = _build(run / files.CONFIG_FILE, config)
    files.load_model_weights(model, run / files.MODEL_FILE, sha256=config.get(files.WEIGHTS_SHA256))
    tokenizer = load_tokenizer(run / files.TOKENIZER_DIR)
    for key in ("tokenizer", "train"):
        if not isinstance(config.get(key, {}), dict):
            raise CheckpointError(f"{run / files.CONFIG_FILE} has {key!r} {config[key]!r}, expected a JSON object")
    expected = config.get("tokenizer", {}).get("fingerprint")
    if expected and getattr(tokenizer, "fingerprint", expected) != expected:
        raise CheckpointError(f"{run / files.TOKENIZER_DIR} has weights {tokenizer.fingerprint[:12]}, expected {expected[:12]} as trained")
    return LoadedRun(model=model.to(device).eval(), tokenizer=tokenizer.to(device), embodiments=dict(model_config.embodiments),
                     config=config, path=run)


def _build(config_file: Path, config: dict) -> tuple[ModelConfig, nn.Module]:
    """The model a run's config.json describes; any field that cannot build one is a CheckpointError."""
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{config_file} has no 'model' object, expected a training run's config")
    # A hand-edited or damaged field (a string width, a negative ratio) fails deep inside
    # the model's constructor; the user needs the file, not that traceback.
    try:
        model_config = ModelConfig.from_json(config["model"])
        return model_config, build_model(config.get("kind", RunKind.HMA.value), model_config)
    except HmaError as e:
        raise CheckpointError(f"{config_file}: {e}") from None
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, ZeroDivisionError, RuntimeError) as e:
        raise CheckpointError(f"{config_file} does not describe a buildable model ({type(e).__name__}: {e}), "
                              "expected the config.json written by `hma train`") from None


def open_run(run: RunLike, device: str | torch.device | None = None) -> LoadedRun:
    """A loaded run on ``device``: ``run`` itself when it already has ``.model``/``.tokenizer``
    (moved there in place when ``device`` is given, else left where it is), else
    ``hma.load(run)`` onto ``device`` (default: the GPU when there is one, else the CPU)."""
    if isinstance(run, LoadedRun):
        if device is not None:
            device = resolve_device(device)
            run.model.to(device)
            run.tokenizer.to(device)
        return run
    return load(run, device=device)


def run_datasets(loaded: LoadedRun) -> list[Path]:
    """:func:`run_dataset` of every robot the run knows that has one, in name order."""
    return [p for e in sorted(loaded.embodiments) if (p := run_dataset(loaded, e)) is not None]


def run_dataset(loaded: LoadedRun, embodiment: str) -> Path | None:
    """The dataset of ``embodiment`` among the run's training data (``config.json`` ->
    ``train.data``), if it is still on disk: as recorded, relative to the folder that holds
    the run, or at the absolute path recorded at training time; else the episode starts a
    shipped run carries (:mod:`hma.run.pretrained`)."""
    train = (loaded.config or {}).get("train", {})
    recorded = [Path(p) for p in train.get("data") or []]
    run_path = loaded.path
    paths = [*recorded, *(Path(run_path).parent / p for p in recorded if run_path is not None and not p.is_absolute()),
             *(Path(p) for p in train.get("data_resolved") or [])]
    for path in paths:
        if not path.exists():
            continue
        for found in find_datasets([path]):
            if read_json(found / METADATA_FILE, "dataset metadata").get("embodiment") == embodiment:
                return found
    return None if run_path is None else starts_dataset(Path(run_path), embodiment)
