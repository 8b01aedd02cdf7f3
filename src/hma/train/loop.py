"""The training loop: one process or one rank of ``torchrun`` (DDP).

``train(TrainConfig)`` builds (or resumes, or fine-tunes) a model on pre-tokenized data,
runs AdamW with warmup + cosine, gradient clipping, optional EMA and bf16 autocast (on CUDA by
default, on the CPU with ``precision="bf16"``),
writes checkpoints and TensorBoard logs from rank 0, and finally evaluates held-out
perplexity against a unigram (token-frequency) baseline into ``RUN/eval.json``.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as torch_dist
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from hma.config import OBJECTIVE_FIELDS, RECIPE, ModelConfig, RunKind, Setting, TokenKind, preset
from hma.data.mixture import MixtureSampler
from hma.data.windows import HOLDOUT
from hma.errors import CheckpointError, ConfigError, EmbodimentError
from hma.io import atomic_write_json, read_json
from hma.train.heldout import evaluate
from hma.train import checkpoint as ckpt
from hma.train.data import TrainingData, batches, load_training_data
from hma.train.distributed import gather_state, init_distributed
from hma.run.kinds import build_model
from hma.run.pretrained import resolve_run
from hma.train.fit import TrainLog, fit
from hma.train.optim import build_optimizer
from hma.train.resume import check_resume
from hma.train.state import Budget, TrainState


@dataclass
class TrainConfig:
    """One training run. Left at their defaults, the model, learning rate, setting and
    changed-token weight are hma's recipe (:data:`hma.config.RECIPE`), as for ``hma train``."""

    data: list[str]
    out: str
    tokenizer: str | None = None  # required for a new run; resumed/fine-tuned runs use their own copy
    preset: str | None = RECIPE.preset
    config_file: str | None = None  # a JSON ModelConfig (or a run's config.json) instead of a preset
    model: str = "hma"  # registry key, hma.run.kinds.MODEL_KINDS
    steps: int | None = None
    minutes: float | None = None
    stop_at: int | None = None  # stop (with a checkpoint) at this step, schedule unchanged: preemption
    batch_size: int = 8
    lr: float = RECIPE.lr
    weight_decay: float = 0.05
    warmup: int = 100
    grad_clip: float = 1.0
    ema: float | None = None  # EMA decay, e.g. 0.999; model.safetensors then holds the EMA weights
    setting: str = RECIPE.setting
    # Loss weight of changed tokens (ModelConfig.changed_token_weight) of a new run over the
    # preset's or config file's; a resumed or fine-tuned run keeps its own; model_overrides win.
    changed_token_weight: float = RECIPE.changed_token_weight
    injection: str | None = None
    seed: int = 0
    frame_hz: float | None = None
    num_frames: int | None = None
    tau: float = 3.0
    holdout: float = HOLDOUT
    train_fraction: float = 1.0  # the first part of each dataset's training episodes (held-out ones unchanged)
    resume: bool = False
    init_from: str | None = None  # fine-tune: start from this run, adding new embodiments
    freeze_trunk: bool = False
    checkpoint_every: int = 500
    # Steps whose weights are kept as loadable runs of their own (RUN/snapshots/step_N/), for a
    # training curve of one run (`hma experiment curve`); multiples of checkpoint_every.
    snapshot_steps: tuple[int, ...] = ()
    log_every: int = 10
    # Steps between held-out metrics and a sample video in TensorBoard (and RUN/samples/); 0: off.
    eval_every: int = 1000
    eval_windows: int = 256
    progress: bool = True
    model_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. tiny test models
    # Autocast precision of the forward pass: "auto" is bf16 on CUDA and fp32 elsewhere;
    # "bf16" also on a CPU with fast bf16 matmuls (AVX-512 BF16 / AMX), "fp32" never.
    precision: str = "auto"


PRECISIONS = ("auto", "fp32", "bf16")


def _use_bf16(precision: str, device: torch.device) -> bool:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is unknown; expected one of: {', '.join(PRECISIONS)}")
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


class _Objective(nn.Module):
    """DDP hooks only fire through ``forward``; this makes the model's loss the forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        return self.model.loss(batch, generator=generator)


def _base_model_config(cfg: TrainConfig) -> ModelConfig:
    if cfg.config_file:
        d = read_json(cfg.config_file, "model config")
        return ModelConfig.from_json(d.get("model", d))
    return preset(cfg.preset or RECIPE.preset)


def _tokenizer_fields(tokenizer) -> dict[str, Any]:
    fields: dict[str, Any] = {"kind": tokenizer.kind, "grid": tuple(tokenizer.grid)}
    if tokenizer.kind == TokenKind.DISCRETE:
        # A tokenizer's own vocabulary is small enough for one output layer.
        fields.update(vocab_size=int(tokenizer.vocab_size), vocab_factors=1)
    else:
        fields.update(latent_channels=int(tokenizer.latent_channels))
    return fields


def _check_embodiments(model_config: ModelConfig, data: TrainingData, *, allow_new: bool) -> list:
    """Data embodiments against the model's: new ones returned (fine-tuning) or refused."""
    new = []
    for name, spec in data.embodiments.items():
        known = model_config.embodiments.get(name)
        if known is None:
            if not allow_new:
                raise EmbodimentError(
                    f"embodiment {name!r} in the data is unknown to this run (it knows "
                    f"{', '.join(sorted(model_config.embodiments))}); use `hma finetune` to add it"
                )
            new.append(spec)
        elif known.chunk_dim != spec.chunk_dim:
            raise EmbodimentError(
                f"embodiment {name!r} has {spec.chunk_dim} action values per frame in the data "
                f"(action_dim {spec.action_dim} x chunk {spec.chunk}), expected {known.chunk_dim} as the model was trained"
            )
        elif known.state_dim and spec.state_dim and known.state_names != spec.state_names:
            raise EmbodimentError(
                f"embodiment {name!r} records a state of {spec.state_dim} values in the data, expected the "
                f"{known.state_dim} values ({', '.join(known.state_names[:4])}, ...) the model's state head was trained on"
            )
    return new


@dataclass
class _Plan:
    """What a call of :func:`train` does: a new run, a resumed one or a fine-tune (``source``
    is the run whose configuration and weights it starts from; None for a new run)."""

    run: Path
    resuming: bool
    source: Path | None


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train (or resume, or fine-tune) one run; returns the final evaluation (rank 0) or {}, and for a
    timed run ``"budget"``: how it ended (:meth:`hma.train.state.Budget.summary`)."""
    setting = Setting.parse(cfg.setting)
    odd = [s for s in cfg.snapshot_steps if s < 1 or s % cfg.checkpoint_every]
    if odd:
        raise ConfigError(f"snapshot step {odd[0]} is invalid, expected a positive multiple of checkpoint_every "
                          f"({cfg.checkpoint_every}): snapshots are taken when a checkpoint is written")
    dist = init_distributed()
    budget = Budget(steps=cfg.steps, minutes=cfg.minutes, stop_at=cfg.stop_at, agree=lambda n: _agree_min(n, dist))
    plan = _plan(cfg, dist)
    model_kind, model_config, tokenizer, tokenizer_dir = _derive_config(cfg, plan)
    data = load_training_data(cfg.data, tokenizer, num_frames=model_config.num_frames,
                              frame_hz=model_config.frame_hz, holdout=cfg.holdout,
                              train_fraction=cfg.train_fraction)
    if plan.source is None:
        model_config = model_config.replace(embodiments=dict(data.embodiments))
    model = _build(cfg, plan, model_kind, model_config, data, dist)

    rank_seed = cfg.seed * dist.world_size + dist.rank
    torch.manual_seed(rank_seed)
    generator = torch.Generator(device=dist.device).manual_seed(rank_seed)
    state = TrainState(model, build_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay), warmup=cfg.warmup,
                       total_steps=cfg.steps, ema=cfg.ema, generators={"generator": generator})
    position = _restore(state, plan, dist) if plan.resuming else 0
    objective: nn.Module = _Objective(model)
    if dist.world_size > 1:
        # Each rank may draw another embodiment: the other stems/heads get no gradient there.
        objective = nn.parallel.DistributedDataParallel(objective, find_unused_parameters=True)
    sampler = MixtureSampler(data.sizes, cfg.batch_size, cfg.tau, cfg.seed, rank=dist.rank,
                             world_size=dist.world_size, start_batch=position)
    stream = batches(data, sampler, dist.device)
    run_config = {"kind": model_kind, "model": model_config.to_json(),
                  "tokenizer": {"name": tokenizer.name, "kind": tokenizer.kind, "fingerprint": tokenizer.fingerprint},
                  "train": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "model_overrides"}}
    # Absolute too: commands run from another folder (policy-eval, synth, play) find the data.
    run_config["train"]["data_resolved"] = [str(Path(d).resolve()) for d in cfg.data]
    log = _open_run_folder(plan.run, cfg, dist, tokenizer_dir) if dist.main else None
    save = _saver(plan.run, cfg, state, sampler, run_config, dist)

    def loss_fn() -> tuple[torch.Tensor, dict[str, float]]:
        batch = next(stream)
        batch["setting"] = setting
        return objective(batch, generator)

    def monitor(step: int) -> None:
        from hma.train.monitor import log_progress

        log_progress(log.writer, plan.run, model, tokenizer, data, step=step, batch_size=cfg.batch_size,
                     seed=cfg.seed, evaluate=evaluate)

    tokens_per_batch = cfg.batch_size * model_config.num_frames * model_config.tokens_per_frame * dist.world_size

    def postfix(record: dict, bar: Any) -> dict:
        rate = tokens_per_batch * bar.format_dict["rate"] if bar.format_dict.get("rate") else float("nan")
        return {"loss": f"{record['loss']:.3f}", "tok_s": f"{rate:,.0f}"}

    started = time.perf_counter()
    model.train()
    autocast = torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=_use_bf16(cfg.precision, dist.device))
    fit(state, loss_fn, budget, grad_clip=cfg.grad_clip, autocast=autocast, log=log, log_every=cfg.log_every,
        postfix=postfix, hooks=[(cfg.eval_every, monitor)] if dist.main and model_kind == RunKind.HMA else [],
        save=save, save_every=cfg.checkpoint_every, progress=dist.main and cfg.progress)
    result: dict[str, Any] = {}
    if dist.main:
        log.close()
        if state.step == state.schedule.total_steps and model_kind == RunKind.HMA:
            result = evaluate(model, data, batch_size=cfg.batch_size, max_windows=cfg.eval_windows, seed=cfg.seed)
            result.update(step=state.step, seconds=round(time.perf_counter() - started, 1))
            atomic_write_json(plan.run / ckpt.EVAL_FILE, result)
        if (line := budget.summary()) is not None:  # how a timed run ended: as planned, re-planned or cut
            result["budget"] = line
    return result


def _plan(cfg: TrainConfig, dist: Any) -> _Plan:
    """New run, resume or fine-tune, from ``cfg`` and what the run folder holds."""
    run = Path(cfg.out)
    if dist.main and run.is_dir():
        ckpt.finish_interrupted(run)  # a save killed midway is completed or discarded
    if dist.world_size > 1:
        torch_dist.barrier()
    resuming = cfg.resume and (run / ckpt.STATE_DIR / ckpt.STATE_FILE).is_file()
    if (run / ckpt.MODEL_FILE).exists() and not resuming:
        raise ConfigError(f"run folder {run} already holds a model, expected a new folder (or pass --resume)")
    if resuming:  # before anything is written: the run's recorded data and settings stay as they are
        check_resume(dataclasses.asdict(cfg), ckpt.read_run_config(run))
    source = run if resuming else (resolve_run(cfg.init_from) if cfg.init_from else None)
    return _Plan(run=run, resuming=resuming, source=source)


def _derive_config(cfg: TrainConfig, plan: _Plan) -> tuple[str, ModelConfig, Any, Path]:
    """(model kind, model configuration, tokenizer, its folder): from the run being resumed or
    fine-tuned, or a preset + the tokenizer + the options."""
    from hma.tokenizer import load_tokenizer

    if plan.source is not None:
        run_config = ckpt.read_run_config(plan.source)
        tokenizer_dir = plan.source / ckpt.TOKENIZER_DIR
        tokenizer = load_tokenizer(tokenizer_dir)
        model_config = ModelConfig.from_json(run_config["model"])
        if model_config.kind != tokenizer.kind or tuple(model_config.grid) != tuple(tokenizer.grid):
            raise CheckpointError(f"{tokenizer_dir} does not match the model in {plan.source} (kind/grid differ)")
        if cfg.init_from and not plan.resuming:
            model_config = model_config.replace(**_objective_changes(model_config, cfg.model_overrides))
        return run_config.get("kind", "hma"), model_config, tokenizer, tokenizer_dir
    if not cfg.tokenizer:
        raise ConfigError("a new run needs --tokenizer DIR (the tokenizer its data was tokenized with)")
    tokenizer_dir = Path(cfg.tokenizer)
    tokenizer = load_tokenizer(tokenizer_dir)
    changes = {**_tokenizer_fields(tokenizer), "changed_token_weight": cfg.changed_token_weight, **cfg.model_overrides}
    for name, value in (("injection", cfg.injection), ("frame_hz", cfg.frame_hz), ("num_frames", cfg.num_frames)):
        if value:
            changes[name] = value
    return cfg.model, _base_model_config(cfg).replace(**changes), tokenizer, tokenizer_dir


def _objective_changes(source: ModelConfig, overrides: dict[str, Any]) -> dict[str, Any]:
    """What a fine-tune changes of its source's model: the objective's settings; the weights' shape must stay."""
    other = sorted(k for k, v in overrides.items() if k not in OBJECTIVE_FIELDS and getattr(source, k, None) != v)
    if other:
        raise ConfigError(f"a fine-tune keeps its source's model; {', '.join(other)} cannot change (expected only "
                          f"{', '.join(OBJECTIVE_FIELDS)})")
    return {k: v for k, v in overrides.items() if k in OBJECTIVE_FIELDS}


def _build(cfg: TrainConfig, plan: _Plan, model_kind: str, model_config: ModelConfig, data: TrainingData,
           dist: Any) -> nn.Module:
    """The model on the device: its weights from the source run, stems and heads for new embodiments, the trunk frozen if asked."""
    new_specs = [] if plan.source is None else _check_embodiments(
        model_config, data, allow_new=cfg.init_from is not None and not plan.resuming)
    torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP would broadcast rank 0's anyway)
    model = build_model(model_kind, model_config)
    if plan.source is not None:
        weights = plan.source / ckpt.STATE_DIR / ckpt.RAW_MODEL_FILE
        ckpt.load_model_weights(model, weights if plan.resuming and weights.is_file() else plan.source / ckpt.MODEL_FILE)
    for spec in new_specs:
        model.add_embodiment(spec)
    if cfg.freeze_trunk:
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(("stems.", "heads.", "state_heads.")))
    return model.to(dist.device)


def _restore(state: TrainState, plan: _Plan, dist: Any) -> int:
    """Load a resumed run's training state; returns the data stream's position."""
    saved = ckpt.read_training_state(plan.run)
    if int(saved["world_size"]) != dist.world_size:
        raise ConfigError(f"{plan.run} was trained with {saved['world_size']} processes, resume it with the same "
                          f"number, not {dist.world_size}")
    state.restore(ckpt.state_tensors(plan.run), saved, rank=dist.rank, where=str(plan.run / ckpt.STATE_DIR))
    return int(saved["data_position"])


def _open_run_folder(run: Path, cfg: TrainConfig, dist: Any, tokenizer_dir: Path) -> TrainLog:
    """The run folder with its own tokenizer copy and seeds (rank 0); returns its log."""
    run.mkdir(parents=True, exist_ok=True)
    if not (run / ckpt.TOKENIZER_DIR).exists():
        shutil.copytree(tokenizer_dir, run / ckpt.TOKENIZER_DIR)  # the run is self-contained
    atomic_write_json(run / ckpt.SEEDS_FILE, {"seed": cfg.seed, "world_size": dist.world_size,
                                             "rank_seeds": [cfg.seed * dist.world_size + r for r in range(dist.world_size)]})
    return TrainLog(run)


def _saver(run: Path, cfg: TrainConfig, state: TrainState, sampler: MixtureSampler, run_config: dict[str, Any],
           dist: Any) -> Callable[[], None]:
    """The checkpoint closure :func:`fit` calls: every rank's random state gathered, rank 0 writes."""
    def save() -> None:
        states = {}
        for key, t in state.random_states(dist.rank).items():
            name = key.rsplit(".", 1)[0]
            states.update({f"{name}.{r}": g for r, g in enumerate(gather_state(t, dist))})
        if dist.main:
            tensors, meta = state.files(states)
            weights = save_safetensors_bytes({k: v.detach().contiguous().cpu() for k, v in state.weights().items()},
                                             metadata={"step": str(state.step)})
            ckpt.write_checkpoint(run, weights=weights, config={**run_config, "step": state.step}, tensors=tensors,
                                  state={**meta, "data_position": sampler.position, "world_size": dist.world_size})
            if state.step in cfg.snapshot_steps:
                ckpt.write_snapshot(run, state.step)
        if dist.world_size > 1:
            torch_dist.barrier()

    return save


def _agree_min(steps: int, dist: Any) -> int:
    """The smallest of the ranks' planned lengths (every rank must stop at the same step)."""
    if dist.world_size == 1:
        return steps
    value = torch.tensor([steps], device=dist.device)
    torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MIN)
    return int(value.item())
