"""``hma tokenizer eval``: reconstruction quality on held-out episodes, code usage, throughput."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from hma.config import TokenKind
from hma.data.store import open_datasets
from hma.errors import DataError
from hma.eval import metrics as M
from hma.tokenizer.frames import episode_rows
from hma.tokenizer.protocol import Tokenizer

STATIC_THRESHOLD = M.MOTION_THRESHOLD  # of 255: a token's patch counts as static below this change


@dataclass
class EmbodimentReport:
    embodiment: str
    frames: int
    psnr: float
    ssim: float
    code_usage: float | None = None
    perplexity: float | None = None
    static_token_changes: float | None = None


@dataclass
class TokenizerReport:
    tokenizer: str
    kind: str
    grid: tuple[int, int]
    per_embodiment: list[EmbodimentReport] = field(default_factory=list)
    psnr: float = 0.0  # mean over held-out frames of all embodiments
    ssim: float = 0.0
    code_usage: float | None = None  # fraction of the vocabulary used on all held-out frames
    perplexity: float | None = None
    # Of the token positions whose pixels did not move between two consecutive frames, the
    # fraction whose token changed anyway: noise a world model must learn to predict.
    static_token_changes: float | None = None
    encode_fps: float = 0.0
    decode_fps: float = 0.0
    roundtrip_fps: float = 0.0  # encode + decode
    threads: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        width = max([len("embodiment")] + [len(r.embodiment) for r in self.per_embodiment]) + 2
        lines = [f"tokenizer {self.tokenizer} ({self.kind}, grid {self.grid[0]}x{self.grid[1]}), held-out episodes:",
                 f"{'embodiment':<{width}}{'frames':>8}{'PSNR dB':>9}{'SSIM':>8}{'codes used':>12}{'perplexity':>12}"
                 f"{'static flips':>14}"]
        total = EmbodimentReport("all", sum(r.frames for r in self.per_embodiment), self.psnr, self.ssim,
                                 self.code_usage, self.perplexity, self.static_token_changes)
        for r in self.per_embodiment + [total]:
            usage = f"{100 * r.code_usage:11.1f}%" if r.code_usage is not None else f"{'-':>12}"
            ppl = f"{r.perplexity:12.1f}" if r.perplexity is not None else f"{'-':>12}"
            flips = f"{100 * r.static_token_changes:13.1f}%" if r.static_token_changes is not None else f"{'-':>14}"
            lines.append(f"{r.embodiment:<{width}}{r.frames:>8}{r.psnr:>9.2f}{r.ssim:>8.4f}{usage}{ppl}{flips}")
        lines.append(f"throughput (batch 64, {self.threads} threads): encode {self.encode_fps:.0f} frames/s, "
                     f"decode {self.decode_fps:.0f} frames/s, encode+decode {self.roundtrip_fps:.0f} frames/s")
        return "\n".join(lines)


def _usage(counts: np.ndarray) -> tuple[float, float]:
    p = counts / max(1, counts.sum())
    nz = p[p > 0]
    return float((counts > 0).mean()), float(math.exp(-(nz * np.log(nz)).sum()))


def static_token_changes(frames_bhw3: np.ndarray, tokens_bhw: np.ndarray, *, pairs: np.ndarray,
                         threshold: float = STATIC_THRESHOLD) -> tuple[int, int]:
    """Token flips where nothing moved, over frame pairs (i, i + 1) for i in ``pairs``.

    A token position is static when no channel of any pixel of its patch changes by more
    than ``threshold`` (of 255). Returns (static positions whose token changed, static positions).
    """
    b, h, w, _ = frames_bhw3.shape
    gh, gw = tokens_bhw.shape[1:]
    if h % gh or w % gw:
        raise DataError(f"frames of {h}x{w} pixels do not tile into the {gh}x{gw} token grid")
    if len(pairs) == 0:
        return 0, 0
    a, c = frames_bhw3[pairs].astype(np.int16), frames_bhw3[pairs + 1].astype(np.int16)
    moved = np.abs(a - c).max(-1) > threshold  # (P, H, W)
    moved = moved.reshape(len(pairs), gh, h // gh, gw, w // gw).any(axis=(2, 4))  # (P, gh, gw)
    changed = tokens_bhw[pairs] != tokens_bhw[pairs + 1]  # (P, gh, gw)
    return int((changed & ~moved).sum()), int((~moved).sum())


def measure_throughput(tokenizer: Tokenizer, *, batch_size: int = 64, repeats: int = 5, frames: np.ndarray | None = None) -> tuple[float, float, float]:
    """(encode, decode, encode+decode) frames/s on one batch, best of ``repeats`` after a warm-up."""
    if frames is None:
        h, w = tokenizer.image_size
        frames = np.random.default_rng(0).integers(0, 256, size=(batch_size, h, w, 3), dtype=np.uint8)
    batch = torch.from_numpy(np.ascontiguousarray(frames[:batch_size]))
    tokenizer.decode(tokenizer.encode(batch))  # warm-up: first calls allocate and pick kernels
    enc, dec = math.inf, math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        tokens = tokenizer.encode(batch)
        t1 = time.perf_counter()
        tokenizer.decode(tokens)
        t2 = time.perf_counter()
        enc, dec = min(enc, t1 - t0), min(dec, t2 - t1)
    n = len(batch)
    return n / enc, n / dec, n / (enc + dec)


def evaluate_tokenizer(tokenizer: Tokenizer, data: Sequence[str | Path], *, max_frames: int = 2048, batch_size: int = 64) -> TokenizerReport:
    """Reconstruction PSNR/SSIM per embodiment on held-out episodes (at most ``max_frames``
    evenly spaced frames each), code usage for discrete tokenizers, and throughput."""
    stores = open_datasets(data)
    report = TokenizerReport(tokenizer.name, tokenizer.kind, tuple(tokenizer.grid), threads=torch.get_num_threads())
    discrete = tokenizer.kind == TokenKind.DISCRETE
    all_counts = np.zeros(tokenizer.vocab_size if discrete else 1, dtype=np.int64)
    all_flips = np.zeros(2, dtype=np.int64)
    psnrs, ssims = [], []
    for store in stores:
        if tuple(store.image_size) != tuple(tokenizer.image_size):
            raise DataError(f"{store.root} has {list(store.image_size)} frames, expected {list(tokenizer.image_size)} for tokenizer {tokenizer.name}")
        rows = episode_rows(store, "heldout")
        if len(rows) == 0:
            rows = episode_rows(store, "train")  # a single-episode dataset has nothing held out
        if len(rows) > max_frames:
            rows = rows[np.linspace(0, len(rows) - 1, max_frames).round().astype(int)]
        counts = np.zeros_like(all_counts)
        p, s = [], []
        flips = np.zeros(2, dtype=np.int64)  # static token changes, static positions
        starts = set(store.episode_starts.tolist())
        for i in range(0, len(rows), batch_size):
            batch_rows = rows[i : i + batch_size + 1]  # one row of overlap: the pair across batches
            frames_np = np.asarray(store.frames[batch_rows])  # (B, H, W, 3)
            frames = torch.from_numpy(frames_np)
            tokens = tokenizer.encode(frames)
            recon = tokenizer.decode(tokens).cpu()
            keep = slice(0, min(batch_size, len(batch_rows)))
            p.append(M.psnr(frames[keep], recon[keep], cap_db=M.PSNR_CAP_DB).double())
            s.append(M.ssim(frames[keep], recon[keep]).double())
            if discrete:
                tok = tokens.cpu().numpy()
                counts += np.bincount(tok[keep].ravel(), minlength=len(counts))
                pairs = np.array([j for j in range(len(batch_rows) - 1) if batch_rows[j + 1] == batch_rows[j] + 1
                                  and int(batch_rows[j + 1]) not in starts], dtype=np.int64)
                flips += static_token_changes(frames_np, tok, pairs=pairs)
        p_all, s_all = torch.cat(p), torch.cat(s)
        psnrs.append(p_all)
        ssims.append(s_all)
        r = EmbodimentReport(store.embodiment, len(rows), p_all.mean().item(), s_all.mean().item())
        if discrete:
            r.code_usage, r.perplexity = _usage(counts)
            r.static_token_changes = float(flips[0] / flips[1]) if flips[1] else None
            all_counts += counts
            all_flips += flips
        report.per_embodiment.append(r)
    report.psnr = torch.cat(psnrs).mean().item()
    report.ssim = torch.cat(ssims).mean().item()
    if discrete:
        report.code_usage, report.perplexity = _usage(all_counts)
        report.static_token_changes = float(all_flips[0] / all_flips[1]) if all_flips[1] else None
    report.encode_fps, report.decode_fps, report.roundtrip_fps = measure_throughput(tokenizer)
    return report
