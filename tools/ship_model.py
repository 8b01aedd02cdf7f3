"""Pack a trained run as the world model shipped in the package, evaluate the packed copy, and
write its model card from that evaluation (no figure typed by hand).

    python tools/ship_model.py --run RUN --starts PRETRAIN_DATA --eval-data EVAL_DATA \
        --eval-generate "data generate --suite tiny --seed 1 --episodes 16" \
        --commands COMMANDS.txt --data-description "..." [--limit "..."]... [--name hma-tiny]

Writes src/hma/pretrained/NAME/ (weights in fp16, tokenizer, episode starts), its MODEL_CARD.md
and card.json (the per-robot figures that tests/test_shipped_model.py reproduces with `hma eval`),
and the card as the shipped-model section of docs/results.md.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    from hma.eval.card import model_card, robot_checks
    from hma.experiments.results import WORK, results_date, shown_paths, update_results_section
    from hma.eval.runner import evaluate
    from hma.io import atomic_write_bytes, atomic_write_json, read_json
    from hma.run import load
    from hma.run.pretrained import MODEL_CARD, pack_run
    from hma.train import checkpoint as ckpt

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="the trained run")
    p.add_argument("--name", default="hma-tiny", help="the shipped name")
    p.add_argument("--starts", nargs="+", required=True, help="datasets whose held-out episode starts ship with it")
    p.add_argument("--eval-data", nargs="+", required=True, help="datasets (with branches) the card is measured on")
    p.add_argument("--eval-generate", required=True,
                   help="the `hma data generate` arguments that made --eval-data, without --out (for the card's test)")
    p.add_argument("--commands", required=True, help="text file: the commands that made the run")
    p.add_argument("--data-description", required=True, help="one line: the training data")
    p.add_argument("--limit", action="append", default=[], help="a known limit, for the card (repeatable)")
    p.add_argument("--logit-adjustment", type=float, default=0.0, help="the sampling it recommends (hma eval's option)")
    p.add_argument("--action-guidance", type=float, default=1.0, help="the sampling it recommends (hma eval's option)")
    p.add_argument("--episodes", type=int, default=2, help="held-out episodes per robot evaluated")
    p.add_argument("--horizon", type=int, default=8, help="generated frames per clip")
    args = p.parse_args()

    out = ROOT / "src" / "hma" / "pretrained" / args.name
    pack_run(args.run, out, starts=args.starts,
             sampling={"logit_adjustment": args.logit_adjustment, "action_guidance": args.action_guidance})
    with tempfile.TemporaryDirectory() as tmp:
        result = evaluate(out, args.eval_data, tmp, episodes=args.episodes, horizon=args.horizon, report=False)
    run = Path(args.run)
    state = ckpt.read_training_state(run)
    trained = read_json(run / ckpt.EVAL_FILE, "training result") if (run / ckpt.EVAL_FILE).exists() else {}
    config = read_json(run / "config.json", "run config")
    loaded = load(out)
    training = {
        "data": args.data_description,
        "model": f"{config['model']['num_blocks']} blocks, width {config['model']['width']}, "
                 f"{sum(p.numel() for p in loaded.model.parameters()):,} parameters, shipped in fp16",
        "recipe": ", ".join(f"{k} {config['train'].get(k)}" for k in ("setting", "frame_hz", "num_frames", "lr",
                                                                       "batch_size", "ema")) +
                  ", " + ", ".join(f"{k} {config['model'][k]}" for k in ("changed_token_weight", "action_dropout",
                                                                          "corrupt_max")),
        "optimizer steps": int(state["step"]),
        "sampling": f"{result['options']['unmask_steps']} unmasking steps, temperature {result['options']['temperature']:g}, "
                    f"logit adjustment {args.logit_adjustment:g}, action guidance {args.action_guidance:g} "
                    "(what hma eval, hma play and the env use with this model unless told otherwise)",
        "wall-clock training": (f"{trained['seconds'] / 3600:.2f} h" if "seconds" in trained else
                                f"{(run / 'model.safetensors').stat().st_mtime - (run / 'seeds.json').stat().st_mtime:.0f} s "
                                "(from the run folder's first file to its last checkpoint)"),
    }
    text = model_card(args.name, result, training=training, commands=Path(args.commands).read_text(),
                      limits=args.limit)
    # The card ships: paths under the temp folder read as $WORK/..., as in docs/results.md.
    if (shown := shown_paths(text)) != text:
        text = shown.rstrip("\n") + f"\n\n`{WORK}` stands for the scratch folder the commands ran in.\n"
    atomic_write_bytes(out / MODEL_CARD, text.encode())
    heading, body = text.split("\n", 1)
    update_results_section(ROOT / "docs" / "results.md", "shipped-model",
                           f"## shipped-model: {args.name}, the world model in the box ({results_date()})\n{body}")
    figures = {name: {"delta_psnr": r["counterfactual"]["delta_psnr"],
                      "token_accuracy": r["token_accuracy"]["heldout"], "checks": robot_checks(r)}
               for name, r in result["per_embodiment"].items()}
    atomic_write_json(out / "card.json", {"eval": {"generate": args.eval_generate, "episodes": args.episodes,
                                                   "horizon": args.horizon, "seed": result["options"]["seed"]},
                                          "per_embodiment": figures})
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
