"""``load_tokenizer``: one entry point for hma tokenizer folders and external ones."""

from __future__ import annotations

from pathlib import Path

from hma.errors import CheckpointError
from hma.tokenizer.external import is_diffusers_autoencoder, load_diffusers_autoencoder
from hma.tokenizer.protocol import Tokenizer
from hma.tokenizer.conv import CONFIG_FILE, load_trained_tokenizer, read_config


def load_tokenizer(path: str | Path, *, image_size: tuple[int, int] | None = None) -> Tokenizer:
    """Open a tokenizer folder: hma's own (``model.safetensors`` + ``config.json``) or a
    diffusers ``AutoencoderKL`` saved with ``save_pretrained`` (``image_size`` overrides its
    ``sample_size``). Raises :class:`CheckpointError` naming the bad file."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"tokenizer folder {path} does not exist")
    config = read_config(path)
    if is_diffusers_autoencoder(config):
        return load_diffusers_autoencoder(path, config, image_size=image_size)
    if config.get("format") != "hma-tokenizer":
        raise CheckpointError(f"{path / CONFIG_FILE} describes neither an hma tokenizer nor a diffusers AutoencoderKL")
    return load_trained_tokenizer(path)
