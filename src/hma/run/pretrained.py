"""The world model shipped inside the package: ``hma.load("hma-tiny")``, no download, no path.

A shipped run is an ordinary run folder under ``hma/pretrained/NAME/`` (``config.json``,
``model.safetensors``, ``tokenizer/``) plus ``starts/EMBODIMENT/``: a few held-out episodes'
first frames as a native dataset, so that the env and ``hma play`` have context frames to
start from without the training data. :func:`pack_run` writes one from a trained run.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from hma.errors import ConfigError
from hma.io import CONFIG_FILE, atomic_write_json, read_json, seal, sha256_file, unseal
from hma.run import files

if TYPE_CHECKING:
    from hma.data.store import EpisodeStore

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
DEFAULT_RUN = "hma-tiny"  # what `hma play`, the env and `hma.load()` use when no run is named
STARTS_DIR = "starts"
MODEL_CARD = "MODEL_CARD.md"


def shipped_runs() -> list[str]:
    """Names of the runs in the package."""
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / files.MODEL_FILE).is_file())


def shipped_path(name: str | Path) -> Path | None:
    """The package folder of shipped run ``name``; None when ``name`` is a local path or no shipped run."""
    text = str(name)
    if Path(text).exists() or "/" in text or text not in shipped_runs():
        return None
    return PRETRAINED_DIR / text


def starts_dataset(run: Path, embodiment: str) -> Path | None:
    """The shipped starts of ``embodiment`` in run folder ``run``, if it carries them."""
    path = Path(run) / STARTS_DIR / embodiment
    return path if path.is_dir() else None


def keep_action_bounds(starts: Path, source: "EpisodeStore") -> None:
    """Give the episode starts the action statistics of the dataset they were cut from: the env
    takes its action bounds from them, and a few short episodes span a fraction of the robot's range."""
    meta = read_json(starts / "metadata.json", "dataset metadata")
    meta["action_stats"] = {k: v.tolist() for k, v in source.action_stats.items()}
    meta.setdefault("extra", {})["action_stats_of"] = f"the {source.num_episodes} episodes the starts were cut from"
    atomic_write_json(starts / "metadata.json", meta)


def pack_run(run: str | Path, out: str | Path, *, starts: Sequence[str | Path] = (), start_episodes: int = 2,
             start_steps: int = 8, half: bool = True, sampling: dict[str, float] | None = None) -> Path:
    """Write trained run ``run`` as a shippable folder ``out``: its weights in fp16 (``half``), its
    config and tokenizer as they are, the sampling it recommends (``sampling``: any of
    ``logit_adjustment``, ``action_guidance``; what ``LoadedRun.sampling`` reads), and, from each
    dataset of ``starts``, the first ``start_steps`` control steps of ``start_episodes`` held-out
    episodes (``starts/EMBODIMENT``).
    Built beside ``out`` and renamed into place at the end, so a failure leaves ``out`` as it was."""
    from safetensors.torch import load_file, save_file

    from hma.data.store import EpisodeStore, StoreWriter
    from hma.data.windows import HOLDOUT, split_episodes

    run, out = Path(run), Path(out)
    config = unseal(read_json(run / CONFIG_FILE, "run config"), run / CONFIG_FILE)
    known = set(config.get("model", {}).get("embodiments", {}))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        weights = load_file(run / files.MODEL_FILE)
        if half:
            weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
        save_file(weights, tmp / files.MODEL_FILE)
        # The tokenizer's weights and config only: its training state, logs and samples stay behind.
        (tmp / files.TOKENIZER_DIR).mkdir()
        for name in (CONFIG_FILE, files.MODEL_FILE):
            shutil.copy2(run / files.TOKENIZER_DIR / name, tmp / files.TOKENIZER_DIR / name)
        config = {**config, files.WEIGHTS_SHA256: sha256_file(tmp / files.MODEL_FILE), "weights_dtype":
                  "float16" if half else "float32", **({"sampling": dict(sampling)} if sampling else {})}
        atomic_write_json(tmp / CONFIG_FILE, seal(config))
        for path in starts:
            store = EpisodeStore(path)
            if store.embodiment not in known:
                raise ConfigError(f"dataset {path} is of embodiment {store.embodiment!r}, which run {run} does not "
                                  f"know; expected one of {', '.join(sorted(known))}")
            _, held = split_episodes(store.num_episodes, HOLDOUT)
            writer = StoreWriter(tmp / STARTS_DIR / store.embodiment, store.info)
            for e in held[:start_episodes]:
                ep = store.episode(e)
                cut = {k: None if ep.get(k) is None else ep[k][:start_steps]
                       for k in ("frames", "actions", "success", "state", "reward")}
                writer.add_episode(cut["frames"], cut["actions"], cut["success"], state=cut["state"],
                                   reward=cut["reward"])
            writer.finalize()
            keep_action_bounds(tmp / STARTS_DIR / store.embodiment, store)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def resolve_run(run: str | Path) -> Path:
    """``run`` as a folder: a local path, a shipped run's name, or a Hub name (:mod:`hma.hub`)."""
    from hma.hub import resolve

    if isinstance(run, str) and not run.strip():
        raise ConfigError(f"run {run!r} is empty, expected a run folder, a shipped run ({', '.join(shipped_runs())}) "
                          "or a Hub name ORG/NAME")
    return shipped_path(run) or resolve(run, what="run")
