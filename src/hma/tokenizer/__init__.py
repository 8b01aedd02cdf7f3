"""Image tokenizers: frames <-> discrete token ids (FSQ) or scaled continuous latents (KL autoencoder).

- :class:`Tokenizer`: the protocol the rest of hma uses (docs/dev/contracts.md).
- :func:`load_tokenizer`: a folder trained by ``hma tokenizer train`` or a diffusers ``AutoencoderKL``.
- :func:`open_token_shard` / :func:`tokenize_dataset`: pre-tokenized datasets beside the frames.
"""

from hma.tokenizer.config import TokenizerConfig
from hma.tokenizer.loading import load_tokenizer
from hma.tokenizer.protocol import Tokenizer
from hma.tokenizer.shards import TokenShard, open_token_shard, tokenize_dataset

__all__ = ["Tokenizer", "TokenizerConfig", "TokenShard", "load_tokenizer", "open_token_shard", "tokenize_dataset"]
