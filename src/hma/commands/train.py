"""`hma train` and `hma finetune`: world-model training on pre-tokenized datasets."""

from __future__ import annotations

import argparse
import json

from hma.commands import add_progress
from hma.commands.argtypes import (fraction, non_negative_float, non_negative_int, nonzero_share, positive_float,
                                   positive_int, share, window_frames)

from hma.config import OBJECTIVE_FIELDS, PRESETS, RECIPE, Setting


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", required=True, help="dataset folders or folders of datasets (tokenized)")
    p.add_argument("--out", required=True, help="run folder to write")
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=positive_int, help="optimizer steps")
    length.add_argument("--minutes", type=positive_float,
                        help="train for this wall-clock budget: steps planned from the measured speed and re-planned "
                             "as it changes; at the deadline the run stops with a checkpoint (a resume counts the "
                             "minutes already trained)")
    p.add_argument("--stop-at", type=positive_int, default=None, help="stop (checkpointed) at this step without changing the schedule")
    p.add_argument("--batch-size", type=positive_int, default=8, help="windows per batch per process")
    p.add_argument("--lr", type=positive_float, default=RECIPE.lr,
                   help="peak learning rate (AdamW, cosine decay); hma's recipe, measured on the demo preset's "
                        "trunk: a much larger trunk may want less")
    p.add_argument("--weight-decay", type=non_negative_float, default=0.05, help="AdamW weight decay")
    p.add_argument("--warmup", type=non_negative_int, default=100, help="linear warmup steps before the cosine decay")
    p.add_argument("--grad-clip", type=non_negative_float, default=1.0, help="gradient norm clip (0: off)")
    p.add_argument("--ema", type=fraction, default=None,
                   help="EMA decay in [0, 1) (e.g. 0.999); model.safetensors then holds the EMA (default: no EMA)")
    p.add_argument("--setting", default=RECIPE.setting, choices=[s.value for s in Setting],
                   help="what is masked: frames (video), frames given actions (forward), both (full), actions given frames (policy), or one of those per sample (mixed)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the initialization and the batch stream (rank r of n draws seed * n + r)")
    p.add_argument("--tau", type=positive_float, default=3.0, help="dataset mixture temperature")
    p.add_argument("--holdout", type=fraction, default=0.1,
                   help="fraction of episodes held out for evaluation, in [0, 1) (at least one episode is held out)")
    p.add_argument("--train-fraction", type=nonzero_share, default=1.0,
                   help="train on the first part of each dataset's training episodes (held-out episodes unchanged)")
    p.add_argument("--checkpoint-every", type=positive_int, default=500, help="optimizer steps between checkpoints")
    p.add_argument("--snapshot-steps", type=positive_int, nargs="+", default=(), metavar="STEP",
                   help="keep the weights at these steps as runs of their own, RUN/snapshots/step_N "
                        "(multiples of --checkpoint-every; for `hma experiment curve`)")
    p.add_argument("--eval-windows", type=positive_int, default=256, help="held-out windows evaluated at the end")
    p.add_argument("--eval-every", type=non_negative_int, default=1000,
                   help="optimizer steps between held-out metrics and a sample video in RUN/tb and RUN/samples/ (0: off)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="autocast precision: auto = bf16 on CUDA, fp32 on the CPU (default: %(default)s)")
    add_progress(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a world model on tokenized datasets (under torchrun: torchrun --nproc_per_node=N -m hma train ...)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--preset", default=RECIPE.preset, choices=list(PRESETS),
                       help="model preset; demo is hma's recipe: the tiny preset's width, 2 blocks, 4-frame windows")
    which.add_argument("--config", default=None, help="JSON model config instead of a preset")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder the data was tokenized with")
    # hma.run.kinds.MODEL_KINDS, spelled out: importing it would load torch for every CLI call.
    p.add_argument("--model", default="hma", choices=("hma", "diffusion"),
                   help="hma: masked autoregression; diffusion: the video diffusion baseline")
    p.add_argument("--injection", default=None,
                   help="action injection, '+'-joined: concat, modulate, add, cross_attention (default: the preset's)")
    p.add_argument("--frame-hz", type=positive_float, default=None,
                   help="common frame rate of the windows, > 0 (default: the preset's)")
    p.add_argument("--num-frames", type=window_frames, default=None,
                   help="window length T, >= 2 (default: the preset's)")
    p.add_argument("--num-blocks", type=positive_int, default=None,
                   help="trunk depth (default: the preset's); on a few CPU minutes a shallower trunk takes "
                        "more steps")
    _objective_options(p)
    _common(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("finetune", help="continue a trained run on new data, adding new embodiments' stems and heads")
    p.add_argument("--from", dest="init_from", required=True, help="trained run folder to start from")
    p.add_argument("--freeze-trunk", action="store_true", help="train only the embodiment stems and heads")
    _objective_options(p)
    _common(p)
    p.set_defaults(func=_finetune)


def _objective_options(p: argparse.ArgumentParser) -> None:
    """The model settings that shape the training objective (a fine-tune may change them too)."""
    p.add_argument("--changed-token-weight", type=positive_float, default=None, dest="changed_weight",
                   help=f"loss weight of masked tokens that differ from the frame before (1: plain mean; default: "
                        f"hma's recipe, {RECIPE.changed_token_weight:g}, for a new run, the source's for a fine-tune)")
    p.add_argument("--action-dropout", type=fraction, default=None, metavar="SHARE",
                   help="share of frames trained with their action hidden, for guidance on actions at sampling "
                        "(default: 0 for a new run, the source's for a fine-tune)")
    p.add_argument("--context-corruption", type=share, default=None, metavar="SHARE", dest="corrupt_max",
                   help="visible tokens replaced by random ids in training, up to this share per sample "
                        "(default: 0.2 for a new run, the source's for a fine-tune)")
    p.add_argument("--visible-past", type=share, default=None, metavar="SHARE",
                   help="share of samples trained with the past fully visible before the frames they predict, as "
                        "generation sees it (default: 0 for a new run, the source's for a fine-tune)")


def _config(args: argparse.Namespace, **extra):
    """The TrainConfig of the parsed options: every field that has an option of the same name."""
    import dataclasses

    from hma.train import TrainConfig

    parsed = vars(args)
    given = {f.name: parsed[f.name] for f in dataclasses.fields(TrainConfig) if f.name in parsed}
    return TrainConfig(**{**given, "progress": not args.no_progress, **extra})


def _report(result: dict) -> int:
    budget = result.pop("budget", None)  # printed last: how a timed run ended
    if "perplexity" in result:
        print(f"held-out perplexity {result['perplexity']:.2f} vs unigram baseline {result['unigram_perplexity']:.2f} "
              f"({result['heldout_tokens']} masked tokens in {result['heldout_windows']} windows)")
        for split, name in (("", "held-out"), ("train_", "training")):
            a = {k: result.get(f"{split}token_accuracy_{k}") for k in ("all", "unchanged", "changed", "copy")}
            if a["all"] is not None:
                print(f"next-frame tokens right on {name} windows: {a['all']:.3f} (copying the last frame "
                      f"{a['copy']:.3f}); unchanged {_share(a['unchanged'])}, changed {_share(a['changed'])}")
    elif result:
        print(json.dumps(result))
    if budget:
        print(budget)
    return 0


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _train(args: argparse.Namespace) -> int:
    from hma.train import train

    overrides = _objective_overrides(args)
    if args.num_blocks is not None:
        overrides["num_blocks"] = args.num_blocks
    # A --config file names the model instead of a preset.
    cfg = _config(args, config_file=args.config, model_overrides=overrides, preset=None if args.config else args.preset)
    return _report(train(cfg))


def _finetune(args: argparse.Namespace) -> int:
    from hma.train import train

    return _report(train(_config(args, model_overrides=_objective_overrides(args))))


def _objective_overrides(args: argparse.Namespace) -> dict:
    """The objective's settings given on the command line (OBJECTIVE_FIELDS, by their option's dest)."""
    dests = {"changed_token_weight": "changed_weight"}
    return {k: v for k in OBJECTIVE_FIELDS if (v := vars(args)[dests.get(k, k)]) is not None}
