"""Parameter counts of a world model, grouped as the paper reports them."""

from __future__ import annotations

from torch import nn

from hma.config import EmbodimentSpec, ModelConfig, TokenKind, preset as get_preset


def _count(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def parameter_groups(model: nn.Module) -> dict[str, int]:
    """trunk, token embedding/output heads, each embodiment's stem and head, total."""
    groups: dict[str, int] = {}
    groups["trunk"] = _count(model.trunk) + model.pos_embed.numel() + model.mask_token.numel() \
        + model.no_action.numel() + model.hidden_action.numel()
    if model.config.kind == TokenKind.DISCRETE:
        groups["token embedding"] = _count(model.token_embed)
        groups["output heads"] = _count(model.token_heads)
    else:
        groups["latent input"] = _count(model.latent_in)
        groups["diffusion head"] = _count(model.diffusion)
    for name in model.stems:
        groups[f"stem {name}"] = _count(model.stems[name])
        groups[f"head {name}"] = _count(model.heads[name])
    groups["total"] = _count(model)
    return groups


def parameter_table(*, preset: str | None = None, model: nn.Module | None = None, title: str = "",
                    kind: str = "discrete", embodiments: int = 1) -> str:
    """A printable table for a preset (with ``embodiments`` 7-dof robots) or a given model (a trained run's)."""
    from hma.model import WorldModel

    if model is None:
        config: ModelConfig = get_preset(preset, kind=kind)
        specs = {f"robot{i}": EmbodimentSpec(f"robot{i}", 7, 1, [0.0] * 7, [1.0] * 7) for i in range(embodiments)}
        model = WorldModel(config.replace(embodiments=specs))
        c = model.config
        vocab = f"vocab {c.vocab_size} as {c.vocab_factors}x{c.factor_size}" if kind == TokenKind.DISCRETE else f"{c.latent_channels} latent channels"
        title = (f"preset {preset} ({kind}): {c.num_blocks} blocks, width {c.width}, {c.num_heads} heads, "
                 f"{c.grid[0]}x{c.grid[1]} tokens, {c.num_frames} frames, {vocab}, injection {c.injection}")
    rows = parameter_groups(model)
    width = max(map(len, rows))
    lines = [title] + [f"  {k:<{width}}  {v:>12,}  ({v / 1e6:.2f}M)" for k, v in rows.items()]
    return "\n".join(lines)
