"""`hma tokenizer train|eval` and `hma tokenize`: image tokenizers and pre-tokenized datasets."""

from __future__ import annotations

import argparse

import time

from hma.commands import add_progress, set_threads
from hma.commands.argtypes import (DEVICE_HELP, Number, at_least, device, non_negative_float, non_negative_int, positive_float,
                                   positive_int)
from hma.config import RECIPE


def register(sub: argparse._SubParsersAction) -> None:
    tok = sub.add_parser("tokenizer", help="train and evaluate image tokenizers")
    tsub = tok.add_subparsers(dest="tokenizer_command", metavar="TOKENIZER_COMMAND", required=True)

    p = tsub.add_parser("train", help="train a discrete (FSQ) or continuous (KL) tokenizer on the training episodes")
    p.add_argument("--data", nargs="+", required=True, help="dataset folders or folders of datasets")
    p.add_argument("--kind", choices=["discrete", "continuous"], required=True,
                   help="discrete: FSQ codes for MaskGIT; continuous: KL latents for MAR and the diffusion baseline")
    p.add_argument("--out", required=True, help="run folder (resumed automatically when it holds a training_state/)")
    p.add_argument("--resume", action="store_true", help="require an existing run in --out to resume")
    p.add_argument("--minutes", type=positive_float, default=None,
                   help="training time budget: steps planned from the measured speed and re-planned as it changes; "
                        "at the deadline the run stops with a checkpoint (a resume counts the minutes already trained)")
    p.add_argument("--steps", type=positive_int, default=None, help="training steps (2000 if neither --steps nor --minutes; not both)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="frames per optimizer step")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate (AdamW)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the initialization and the frame order")
    p.add_argument("--name", default=None, help="tokenizer name, used for token shard folders (default: --out's folder name)")
    p.add_argument("--downsample", type=at_least(2), default=8, help="frame size / token grid size (8: 64x64 -> 8x8)")
    p.add_argument("--channels", type=positive_int, nargs="+", default=None,
                   help="width of each stride-2 stage, multiples of 8 (default: 32, 64, 128 ..., one per factor of 2 of "
                        "--downsample)")
    p.add_argument("--res-blocks", type=non_negative_int, default=2, help="residual blocks at the token resolution")
    # hma.tokenizer.config.ENCODERS, spelled out: importing it would load torch for every CLI call.
    p.add_argument("--encoder", choices=("conv", "patch"), default=RECIPE.encoder,
                   help="conv: each token sees most of the frame; patch: each token sees its own pixels only, "
                        "so a static background keeps its tokens while the robot moves")
    p.add_argument("--vocab-size", type=at_least(2), default=None,
                   help="discrete: a vocabulary of about 2^10 to 2^16 (FSQ levels from the FSQ paper) instead of "
                        "the recipe's --fsq-levels")
    p.add_argument("--fsq-levels", type=at_least(2), nargs="+", default=None,
                   help=f"discrete: explicit FSQ levels, overriding --vocab-size (without either: hma's recipe, "
                        f"{' '.join(map(str, RECIPE.fsq_levels))})")
    p.add_argument("--latent-channels", type=positive_int, default=8, help="continuous: latent channels per token")
    p.add_argument("--kl-weight", type=non_negative_float, default=1e-5, help="continuous: weight of the KL term")
    p.add_argument("--recon-loss", choices=["l1", "l2", "l1+l2"], default="l1+l2", help="pixel reconstruction loss")
    p.add_argument("--grad-loss-weight", type=non_negative_float, default=0.0, help="weight of an L1 loss on image gradients (0: off)")
    p.add_argument("--foreground-weight", type=Number(float, 1), default=RECIPE.foreground_weight,
                   help="loss weight of pixels that differ from their dataset's median background: the robot "
                        "and what it moves (1: plain mean)")
    p.add_argument("--sample-every", type=positive_int, default=500, help="steps between reconstruction grids in OUT/samples/")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's, every core)")
    p.add_argument("--device", type=device, default=None, help=DEVICE_HELP)
    add_progress(p)
    p.set_defaults(func=_train)

    p = tsub.add_parser("eval", help="reconstruction PSNR/SSIM on held-out episodes, code usage, throughput")
    p.add_argument("--tokenizer", required=True, help="tokenizer folder")
    p.add_argument("--data", nargs="+", required=True, help="dataset folders or folders of datasets")
    p.add_argument("--max-frames", type=positive_int, default=2048, help="held-out frames per embodiment (evenly spaced)")
    p.add_argument("--frame-hz", type=positive_float, default=10.0,
                   help="frame rate of the ceiling's clips on counterfactual branches (default: %(default)s)")
    p.add_argument("--horizon", type=positive_int, default=8,
                   help="generated frames of the ceiling's clips, after 2 context frames (default: %(default)s)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's, every core)")
    p.add_argument("--device", type=device, default=None, help=DEVICE_HELP)
    add_progress(p)
    p.set_defaults(func=_eval)

    p = sub.add_parser("tokenize", help="write token / latent shards beside datasets (DATASET/tokens/<tokenizer>-<identity>/)")
    p.add_argument("--data", nargs="+", required=True, help="dataset folders or folders of datasets")
    p.add_argument("--tokenizer", required=True, help="tokenizer folder")
    p.add_argument("--batch-size", type=positive_int, default=256, help="frames encoded together")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's, every core)")
    p.add_argument("--device", type=device, default=None, help=DEVICE_HELP)
    add_progress(p)
    p.set_defaults(func=_tokenize)


def _setup(args: argparse.Namespace) -> "torch.device":
    """Apply ``--threads``; the ``--device`` to run on (:func:`hma.device.resolve_device`)."""
    from hma.device import resolve_device

    set_threads(args.threads)
    return resolve_device(args.device, what="--device")


def _train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hma.errors import ConfigError
    from hma.tokenizer.config import TokenizerConfig
    from hma.train.checkpoint import STATE_DIR, STATE_FILE
    from hma.train.tokenizer import TrainOptions, train_tokenizer

    device = _setup(args)
    out = Path(args.out)
    if args.resume and not (out / STATE_DIR / STATE_FILE).is_file():
        raise ConfigError(f"--resume was given but {out / STATE_DIR} does not exist, expected a run to resume")
    # Without --fsq-levels or --vocab-size: the recipe's levels (hma.config.RECIPE).
    levels = args.fsq_levels or (() if args.vocab_size is not None else RECIPE.fsq_levels)
    vocab = {} if args.vocab_size is None else {"vocab_size": args.vocab_size}
    config = TokenizerConfig(
        kind=args.kind, name=args.name or out.resolve().name, downsample=args.downsample,
        channels=tuple(args.channels or ()), num_res_blocks=args.res_blocks, encoder=args.encoder, **vocab,
        fsq_levels=tuple(levels), latent_channels=args.latent_channels, kl_weight=args.kl_weight,
        recon_loss=args.recon_loss, grad_loss_weight=args.grad_loss_weight, foreground_weight=args.foreground_weight,
    )
    options = TrainOptions(steps=args.steps, minutes=args.minutes, batch_size=args.batch_size, lr=args.lr,
                           seed=args.seed, sample_every=args.sample_every)
    ended: list[str] = []  # how a timed run ended, printed last
    tokenizer = train_tokenizer(args.data, out, config, options, device=device, progress=not args.no_progress,
                                report=ended.append)
    print(f"wrote {out}: {tokenizer} fingerprint {tokenizer.fingerprint[:12]}")
    for line in ended:
        print(line)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from hma.eval.counterfactual import tokenizer_ceiling
    from hma.io import atomic_write_json
    from hma.eval.tokenizer import evaluate_tokenizer
    from hma.tokenizer.loading import load_tokenizer

    device = _setup(args)
    tokenizer = load_tokenizer(args.tokenizer).to(device)
    report = evaluate_tokenizer(tokenizer, args.data, max_frames=args.max_frames)
    print(report.table())
    ceiling = tokenizer_ceiling(tokenizer, args.data, frame_hz=args.frame_hz, horizon=args.horizon)
    if ceiling:
        print(f"on counterfactual branches ({args.frame_hz:g} Hz, 2 context + {args.horizon} frames; mean [95% interval]):")
        for name, c in ceiling.items():
            motion = c["tokenizer_motion_psnr"]
            print(f"  {name}: ceiling ΔPSNR {c['ceiling']['mean']:.2f} [{c['ceiling']['lo']:.2f}, {c['ceiling']['hi']:.2f}] dB, "
                  f"motion PSNR {'–' if motion is None else format(motion['mean'], '.2f')} dB, "
                  f"{100 * c['moving_pixels']:.1f}% moving pixels, {c['clips']} clips")
    if args.json:
        atomic_write_json(args.json, {**report.to_json(), "counterfactual": ceiling})
        print(f"wrote {args.json}")
    return 0


def _tokenize(args: argparse.Namespace) -> int:
    from hma.data.store import open_datasets
    from hma.tokenizer.loading import load_tokenizer
    from hma.tokenizer.shards import tokenize_dataset

    device = _setup(args)
    tokenizer = load_tokenizer(args.tokenizer).to(device)
    for store in open_datasets(args.data):
        t0 = time.perf_counter()
        shard, skipped = tokenize_dataset(store, tokenizer, batch_size=args.batch_size, progress=not args.no_progress)
        if skipped:
            print(f"{shard.path}: up to date, skipped")
        else:
            dt = time.perf_counter() - t0
            print(f"{shard.path}: {shard.meta['num_frames']} frames in {dt:.1f} s ({shard.meta['num_frames'] / dt:.0f} frames/s)")
    return 0
