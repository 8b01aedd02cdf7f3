"""Tokenizers trained by hma: a :class:`ConvAutoencoder` behind the :class:`Tokenizer` protocol,
saved as ``model.safetensors`` + ``config.json``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from hma.config import TokenKind
from hma.errors import CheckpointError, HmaError
from hma.io import CONFIG_FILE, WEIGHTS_FILE, atomic_write_bytes, atomic_write_json, read_config_file, seal
from hma.tokenizer.config import TokenizerConfig
from hma.tokenizer.modeling import ConvAutoencoder
from hma.tokenizer.protocol import content_identity, frames_to_unit, unit_to_frames



class ConvTokenizer:
    """A trained :class:`ConvAutoencoder` seen through the :class:`~hma.tokenizer.protocol.Tokenizer` protocol."""

    def __init__(self, model: ConvAutoencoder, *, fingerprint: str = "") -> None:
        self.model = model.eval()
        self.config: TokenizerConfig = model.config
        self.fingerprint = fingerprint

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def identity(self) -> str:
        """Its config and weights in 12 hex digits (a model not loaded from a file hashes its weights now)."""
        weights = self.fingerprint or hashlib.sha256(weights_bytes(self.model)).hexdigest()
        return content_identity(self.config.to_json(), weights)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def image_size(self) -> tuple[int, int]:
        return self.config.image_size

    @property
    def grid(self) -> tuple[int, int]:
        return self.config.grid

    @property
    def vocab_size(self) -> int:
        if self.kind != TokenKind.DISCRETE:  # an AttributeError tells the kinds apart, as the protocol says
            raise AttributeError("a continuous tokenizer has latent_channels, not vocab_size")
        return self.config.vocab_size

    @property
    def latent_channels(self) -> int:
        if self.kind != TokenKind.CONTINUOUS:
            raise AttributeError("a discrete tokenizer has vocab_size, not latent_channels")
        return self.config.latent_channels

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str) -> "ConvTokenizer":
        self.model.to(device)
        return self

    @torch.inference_mode()
    def encode(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> ids (B, h, w) long, or scaled latent means (B, C, h, w)."""
        p = next(self.model.parameters())
        x = frames_to_unit(frames, image_size=self.image_size, device=p.device, dtype=p.dtype)  # (B, 3, H, W)
        if self.kind == TokenKind.DISCRETE:
            return self.model.encode_ids(x)  # (B, h, w)
        # The mean, not a sample: tokens of a frame must not depend on a random draw.
        mean, _ = self.model.encode_moments(x)  # (B, C, h, w)
        return mean * self.config.latent_scale

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) or scaled latents (B, C, h, w) -> uint8 (B, H, W, 3)."""
        p = next(self.model.parameters())
        tokens = torch.as_tensor(tokens, device=p.device)
        if self.kind == TokenKind.DISCRETE:
            recon = self.model.decode_ids(tokens.long())  # (B, 3, H, W)
        else:
            recon = self.model.decoder(tokens.to(p.dtype) / self.config.latent_scale)  # (B, 3, H, W)
        return unit_to_frames(recon)

    def __repr__(self) -> str:
        size = f"vocab={self.vocab_size}" if self.kind == TokenKind.DISCRETE else f"channels={self.latent_channels}"
        return f"ConvTokenizer(name={self.name!r}, kind={self.kind!r}, grid={self.grid}, {size})"


def weights_bytes(model: ConvAutoencoder) -> bytes:
    """The safetensors serialization of a model's weights (the fingerprint is its sha256)."""
    return save_safetensors_bytes({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()})


def save_tokenizer(model: ConvAutoencoder, out: str | Path) -> str:
    """Write ``model.safetensors`` and ``config.json`` atomically into ``out``; returns the fingerprint."""
    out = Path(out)
    data = weights_bytes(model)
    atomic_write_bytes(out / WEIGHTS_FILE, data)
    atomic_write_json(out / CONFIG_FILE, seal(model.config.to_json()))
    return hashlib.sha256(data).hexdigest()


def read_config(path: Path) -> dict:
    """config.json of a tokenizer folder as a dict, or a CheckpointError naming the file."""
    return read_config_file(path / CONFIG_FILE, "tokenizer")


def read_weights(file: Path) -> tuple[dict[str, torch.Tensor], str]:
    """Tensors of a safetensors file and its sha256, or a CheckpointError naming the file."""
    if not file.is_file():
        raise CheckpointError(f"{file} is missing, expected the tokenizer weights")
    data = file.read_bytes()
    try:
        tensors = load_safetensors_bytes(data)
    except (SafetensorError, ValueError, RuntimeError, OSError) as e:
        raise CheckpointError(f"{file} is not a readable safetensors file ({e}): it is truncated or corrupt") from None
    return tensors, hashlib.sha256(data).hexdigest()


def load_trained_tokenizer(path: str | Path) -> ConvTokenizer:
    """Open a tokenizer folder written by :func:`save_tokenizer` (on the CPU; use ``.to()``)."""
    path = Path(path)
    file = path / CONFIG_FILE
    raw = read_config(path)
    # A damaged field (a string where a size belongs) fails deep inside the config or the
    # model's constructor; the user needs the file named, not that traceback.
    try:
        config = TokenizerConfig.from_json(raw, where=str(file))
        model = ConvAutoencoder(config)
    except HmaError as e:
        raise CheckpointError(str(e) if str(file) in str(e) else f"{file}: {e}") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError, RuntimeError) as e:
        raise CheckpointError(f"{file} does not describe a tokenizer ({type(e).__name__}: {e})") from None
    tensors, fingerprint = read_weights(path / WEIGHTS_FILE)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path / WEIGHTS_FILE} does not match {CONFIG_FILE} ({first})") from None
    return ConvTokenizer(model, fingerprint=fingerprint)
