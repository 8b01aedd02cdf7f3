"""External tokenizers from local folders: a diffusers ``AutoencoderKL`` as a continuous tokenizer.

The folder is what ``AutoencoderKL.save_pretrained`` writes (``config.json`` +
``diffusion_pytorch_model.safetensors``). Its ``scaling_factor`` plays the role of our
latent scale; nothing is ever downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hma.errors import CheckpointError
from hma.tokenizer.protocol import content_identity, frames_to_unit, unit_to_frames
from hma.tokenizer.conv import read_weights

DIFFUSERS_WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"


def is_diffusers_autoencoder(config: dict) -> bool:
    return config.get("_class_name") == "AutoencoderKL"


class DiffusersKLTokenizer:
    """A diffusers ``AutoencoderKL`` behind the :class:`~hma.tokenizer.protocol.Tokenizer` protocol."""

    kind = "continuous"

    def __init__(self, vae: torch.nn.Module, *, name: str, fingerprint: str, image_size: tuple[int, int],
                 identity: str) -> None:
        self.vae = vae.eval()
        self.name = name
        self.fingerprint = fingerprint
        self.identity = identity
        self._image_size = image_size
        cfg = vae.config
        self.latent_scale = float(cfg.scaling_factor)
        self.downsample = 2 ** (len(cfg.block_out_channels) - 1)
        if image_size[0] % self.downsample or image_size[1] % self.downsample:
            raise CheckpointError(f"image size {list(image_size)} is not divisible by the autoencoder's downsampling {self.downsample}")

    @property
    def image_size(self) -> tuple[int, int]:
        return self._image_size

    @property
    def grid(self) -> tuple[int, int]:
        return self._image_size[0] // self.downsample, self._image_size[1] // self.downsample

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    def to(self, device: torch.device | str) -> "DiffusersKLTokenizer":
        self.vae.to(device)
        return self

    @torch.inference_mode()
    def encode(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        p = next(self.vae.parameters())
        x = frames_to_unit(frames, image_size=self.image_size, device=p.device, dtype=p.dtype)  # (B, 3, H, W)
        return self.vae.encode(x).latent_dist.mean * self.latent_scale  # (B, C, h, w)

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        p = next(self.vae.parameters())
        z = torch.as_tensor(tokens, device=p.device).to(p.dtype) / self.latent_scale  # (B, C, h, w)
        return unit_to_frames(self.vae.decode(z).sample)

    def __repr__(self) -> str:
        return f"DiffusersKLTokenizer(name={self.name!r}, grid={self.grid}, channels={self.latent_channels})"


def load_diffusers_autoencoder(path: Path, config: dict, *, image_size: tuple[int, int] | None = None) -> DiffusersKLTokenizer:
    """Wrap the ``AutoencoderKL`` saved in ``path``; the frame size defaults to its ``sample_size``."""
    from diffusers import AutoencoderKL

    tensors, fingerprint = read_weights(path / DIFFUSERS_WEIGHTS_FILE)
    try:
        vae = AutoencoderKL.from_config(config)
        vae.load_state_dict(tensors)
    except (RuntimeError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path / DIFFUSERS_WEIGHTS_FILE} does not match its config.json ({first})") from None
    if image_size is None:
        size = config.get("sample_size", 64)
        image_size = tuple(size) if isinstance(size, (list, tuple)) else (int(size), int(size))
    identity = content_identity({**config, "image_size": list(image_size)}, fingerprint)  # the size sets the grid
    return DiffusersKLTokenizer(vae, name=path.name, fingerprint=fingerprint, image_size=tuple(image_size),
                                identity=identity)
