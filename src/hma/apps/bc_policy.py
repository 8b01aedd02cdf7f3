"""The behaviour-cloning policy: a small CNN from a frame to a z-normalized action chunk,
saved as ``model.safetensors`` + ``config.json`` (trained by :func:`hma.apps.bc.train_bc`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hma.errors import CheckpointError, DataError
from hma.model.cnn import SmallCNN
from hma.io import read_weights_folder, save_weights_folder



class BCPolicy:
    """Frame -> action chunk (chunk, A), regressed on z-normalized chunks."""

    def __init__(self, net: SmallCNN, *, chunk: int, action_dim: int, mean: np.ndarray, std: np.ndarray,
                 image_size: tuple[int, int], name: str = "bc") -> None:
        self.net = net.eval()
        self.chunk, self.action_dim = chunk, action_dim
        self.mean, self.std = np.asarray(mean, np.float32), np.asarray(std, np.float32)  # (k*A,)
        self.image_size = tuple(image_size)
        self.name = name

    def reset(self, seed: int | None = None) -> None:
        """The policy is deterministic and memoryless: nothing to reset."""

    @torch.inference_mode()
    def act(self, frame: np.ndarray) -> np.ndarray:
        frame = np.array(frame, copy=True)  # owned and writable: torch refuses read-only views
        if frame.shape != (*self.image_size, 3):
            raise DataError(f"frame has shape {frame.shape}, expected ({self.image_size[0]}, {self.image_size[1]}, 3)")
        device = next(self.net.parameters()).device
        z = self.net(torch.as_tensor(frame[None], device=device))[0].float().cpu().numpy()  # (k*A,)
        return (z * self.std + self.mean).reshape(self.chunk, self.action_dim).astype(np.float32)

    def save(self, out: str | Path) -> None:
        save_weights_folder(out, self.net.state_dict(), {
            "format": "hma-bc-policy", "width": self.net.width, "grid": self.net.grid, "chunk": self.chunk,
            "action_dim": self.action_dim, "mean": self.mean.tolist(), "std": self.std.tolist(),
            "image_size": list(self.image_size)})


def load_bc_policy(path: str | Path, *, name: str = "bc") -> BCPolicy:
    tensors, c = read_weights_folder(path, "BC policy")
    try:
        net = SmallCNN(c["chunk"] * c["action_dim"], width=int(c["width"]), grid=int(c.get("grid", 1)))  # older files: 1
        net.load_state_dict(tensors)
        return BCPolicy(net, chunk=c["chunk"], action_dim=c["action_dim"], mean=np.asarray(c["mean"]),
                        std=np.asarray(c["std"]), image_size=tuple(c["image_size"]), name=name)
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"BC policy {path} does not hold the policy its config describes ({type(e).__name__}), "
                              "expected the files `hma experiment synth-bc` writes") from None
