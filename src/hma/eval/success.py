"""A small CNN that tells success from a single frame, trained on real frames labelled
with the simulator's success flags; it judges rollouts in the world model, which has no
simulator state to ask (policy evaluation, paper sec. 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hma.data.store import EpisodeStore
from hma.model.cnn import SmallCNN
from hma.errors import CheckpointError, DataError
from hma.io import read_weights_folder, save_weights_folder
from hma.train.fit import fit
from hma.train.state import Budget, TrainState



class SuccessClassifier:
    """``predict(frames (N, H, W, 3) uint8) -> success probabilities (N,)``; an episode succeeds
    when ``min_frames`` consecutive frames score above ``threshold`` (both calibrated on
    held-out episodes by :func:`train_success_classifier`)."""

    def __init__(self, net: SmallCNN, image_size: tuple[int, int], embodiment: str, *, threshold: float = 0.5,
                 min_frames: int = 1) -> None:
        self.net = net.eval()
        self.image_size = tuple(image_size)
        self.embodiment = embodiment
        self.threshold = float(threshold)
        self.min_frames = int(min_frames)

    @torch.inference_mode()
    def predict(self, frames: np.ndarray, batch_size: int = 256) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.shape[1:] != (*self.image_size, 3):
            raise DataError(f"frames have shape {frames.shape}, expected (N, {self.image_size[0]}, {self.image_size[1]}, 3)")
        device = next(self.net.parameters()).device
        probs = [torch.sigmoid(self.net(torch.as_tensor(np.array(frames[i : i + batch_size]), device=device))[:, 0]).cpu()
                 for i in range(0, len(frames), batch_size)]
        return torch.cat(probs).numpy() if probs else np.zeros(0, np.float32)

    def episode_success(self, frames: np.ndarray) -> bool:
        """The episode's frames (T, H, W, 3) hold a run of ``min_frames`` frames judged a success."""
        return longest_run(self.predict(frames) > self.threshold) >= self.min_frames

    def save(self, out: str | Path) -> None:
        save_weights_folder(out, self.net.state_dict(), {"format": "hma-success-classifier", "width": self.net.width,
                                                         "image_size": list(self.image_size), "embodiment": self.embodiment,
                                                         "threshold": self.threshold, "min_frames": self.min_frames})


def longest_run(flags: np.ndarray) -> int:
    """Length of the longest run of True in a 1-D boolean array."""
    best = run = 0
    for f in np.asarray(flags, bool):
        run = run + 1 if f else 0
        best = max(best, run)
    return best


def load_success_classifier(path: str | Path) -> SuccessClassifier:
    tensors, config = read_weights_folder(path, "success classifier")
    try:
        net = SmallCNN(1, width=int(config["width"]))
        net.load_state_dict(tensors)
        return SuccessClassifier(net, tuple(config["image_size"]), str(config["embodiment"]),
                                 threshold=float(config.get("threshold", 0.5)), min_frames=int(config.get("min_frames", 1)))
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"success classifier {path} does not hold the classifier its config describes "
                              f"({type(e).__name__}), expected the files `hma policy-eval` writes") from None


def reconstruct(frames: np.ndarray, tokenizer, batch_size: int = 256) -> np.ndarray:
    """Frames (N, H, W, 3) after a round trip through the tokenizer (encode, decode)."""
    out = [tokenizer.decode(tokenizer.encode(np.array(frames[i : i + batch_size]))).cpu().numpy()
           for i in range(0, len(frames), batch_size)]
    return np.concatenate(out)


THRESHOLDS = (0.5, 0.7, 0.9)
MIN_FRAMES = (1, 2, 3, 4)
CALIBRATION_HOLDOUT = 0.2


def train_success_classifier(store: EpisodeStore, *, steps: int = 300, batch_size: int = 64, lr: float = 2e-3,
                             seed: int = 0, width: int = 16, tokenizer=None) -> tuple[SuccessClassifier, dict[str, float]]:
    """Train on the frames of ``store``'s training episodes with their success flags, success
    and failure frames drawn equally often (success is rare in most episodes); then pick the
    episode rule (threshold, consecutive frames) that best tells the held-out episodes that
    succeed from those that fail. Returns the classifier and its held-out balanced accuracy,
    per frame and per episode.

    A frame classifier with a small false-positive rate calls most long failed episodes a
    success under "any frame above 0.5", which is why the rule is calibrated, not fixed.
    With ``tokenizer``, half of the training frames are shown as tokenizer reconstructions,
    and the rule is calibrated on real and reconstructed episodes alike: generated frames
    come out of the same decoder, and a classifier that has only seen crisp real frames
    mistakes decoder artifacts for task states."""
    if store.success is None:
        raise DataError(f"dataset {store.root} has no success flags, expected a simulator that reports success")
    labels = np.asarray(store.success, bool)
    if labels.all() or not labels.any():
        raise DataError(f"dataset {store.root} has {int(labels.sum())} success frames of {len(labels)}, "
                        f"expected both successes and failures to learn from")
    from hma.data.windows import split_episodes

    train_eps, held_eps = split_episodes(store.num_episodes, CALIBRATION_HOLDOUT)
    rows = lambda eps: np.concatenate([np.arange(*store.episode_slice(e).indices(store.num_frames)) for e in eps])  # noqa: E731
    train_rows = rows(train_eps)
    pos, neg = train_rows[labels[train_rows]], train_rows[~labels[train_rows]]
    if len(pos) == 0 or len(neg) == 0:
        pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)  # too few episodes to hold any out
    rng = np.random.default_rng(seed)
    with torch.random.fork_rng():  # seeded weight init without touching the caller's global RNG
        torch.manual_seed(seed)
        net = SmallCNN(1, width=width)
    recon = reconstruct(store.frames, tokenizer) if tokenizer is not None else None  # (N, H, W, 3)
    state = TrainState(net, torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4), floor=1.0)  # constant LR

    def loss_fn() -> tuple[torch.Tensor, dict[str, float]]:
        idx = np.sort(np.concatenate([rng.choice(pos, batch_size // 2), rng.choice(neg, batch_size // 2)]))
        frames = np.asarray(store.frames[idx])  # (B, H, W, 3)
        if recon is not None:
            frames = np.where(rng.random(len(idx))[:, None, None, None] < 0.5, recon[idx], frames)
        target = torch.as_tensor(labels[idx], dtype=torch.float32)
        loss = F.binary_cross_entropy_with_logits(net(torch.as_tensor(frames))[:, 0], target)
        last["loss"] = loss.item()
        return loss, dict(last)

    last: dict[str, float] = {}
    fit(state, loss_fn, Budget(steps=steps), log_every=steps)
    classifier = SuccessClassifier(net, store.image_size, store.embodiment)
    metrics = {"train_loss": last["loss"]}
    if held_eps:
        # Each held-out episode's frames are scored once: per frame, then by the episode rule.
        probs = [classifier.predict(np.asarray(store.frames[store.episode_slice(e)])) for e in held_eps]
        metrics["heldout_balanced_accuracy"] = balanced_accuracy(np.concatenate(probs) > 0.5, labels[rows(held_eps)])
        truth = [bool(labels[store.episode_slice(e)].any()) for e in held_eps]
        if recon is not None:
            probs += [classifier.predict(recon[store.episode_slice(e)]) for e in held_eps]
            truth += truth
        classifier.threshold, classifier.min_frames, metrics["heldout_episode_balanced_accuracy"] = \
            calibrate_episode_rule(probs, truth)
        metrics.update(threshold=classifier.threshold, min_frames=classifier.min_frames)
    return classifier, metrics


def balanced_accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean recall over the classes present in ``truth``."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    return float(np.mean([(pred[truth == c] == c).mean() for c in (True, False) if (truth == c).any()]))


def calibrate_episode_rule(probs: list[np.ndarray], truth: list[bool]) -> tuple[float, int, float]:
    """(threshold, min_frames, balanced accuracy) of the rule that best matches ``truth`` over
    episodes given their per-frame probabilities; ties and one-class episode sets keep the
    simplest rule (0.5, one frame)."""
    best = (THRESHOLDS[0], MIN_FRAMES[0], balanced_accuracy([longest_run(p > THRESHOLDS[0]) >= 1 for p in probs], truth))
    if len(set(truth)) < 2:
        return best
    for threshold in THRESHOLDS:
        for n in MIN_FRAMES:
            score = balanced_accuracy([longest_run(p > threshold) >= n for p in probs], truth)
            if score > best[2] + 1e-9:
                best = (threshold, n, score)
    return best
