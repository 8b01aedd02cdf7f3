"""hma's LPIPS and FID-Inception against the reference packages (`lpips`, `pytorch-fid`): the same
weights in both, the same outputs to float tolerance.

The reference packages need torchvision, which hma's own environment cannot hold, so these run
in a separate one: `make test-reference`. Elsewhere they are skipped. The backbones get random
weights (nothing can be downloaded here); LPIPS's calibration layers are the real ones the
`lpips` wheel ships, found by hma where that package keeps them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

lpips = pytest.importorskip("lpips")
fid_inception = pytest.importorskip("pytorch_fid.inception")

from hma.eval.nets import LPIPS, FIDInceptionV3, load_fid_inception, load_lpips  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")


def _images(b: int, size: int, seed: int, *, smooth: bool) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1]: noise, or a smooth picture (closer to what the metrics see)."""
    g = torch.Generator().manual_seed(seed)
    if not smooth:
        return torch.rand(b, 3, size, size, generator=g)
    coarse = torch.rand(b, 3, 4, 4, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def test_lpips_equals_the_lpips_package(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False).eval()
    # The backbone in torchvision's AlexNet layout: the package splits `features` into slices
    # whose modules keep their index in `features`.
    alexnet = {f"features.{index}.{name}": tensor
               for block in (reference.net.slice1, reference.net.slice2, reference.net.slice3, reference.net.slice4,
                             reference.net.slice5)
               for index, module in block.named_children() for name, tensor in module.state_dict().items()}
    torch.save(alexnet, tmp_path / "alexnet-owt-7be5be79.pth")
    net = load_lpips(alexnet_weights=tmp_path / "alexnet-owt-7be5be79.pth")  # linear layers: from the package
    assert isinstance(net, LPIPS)
    for smooth in (False, True):
        a, b = _images(4, 64, 1, smooth=smooth), _images(4, 64, 2, smooth=smooth)
        with torch.no_grad():
            expected = reference(a, b, normalize=True).reshape(-1)  # the package's [0, 1] input path
            got = net(a, b)
        assert bool((expected > 0).all())
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def _random_fid_model(monkeypatch: pytest.MonkeyPatch) -> list[torch.nn.Module]:
    """Make pytorch-fid build its FID Inception with random weights instead of downloading them;
    returns (once built) the model in the published file's layout."""
    built: list[torch.nn.Module] = []

    def own_state_dict(url: str, **kwargs) -> dict[str, torch.Tensor]:
        inception = sys._getframe(1).f_locals["inception"]  # the model fid_inception_v3 is building
        built.append(inception)
        return inception.state_dict()

    monkeypatch.setattr(fid_inception, "load_state_dict_from_url", own_state_dict)
    return built


def test_fid_inception_equals_pytorch_fid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    built = _random_fid_model(monkeypatch)
    block = fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]
    reference = fid_inception.InceptionV3([block], resize_input=True, normalize_input=True, use_fid_inception=True)
    # Batch-norm statistics measured on images, as trained ones are: every layer then passes on
    # the input's variation (with default statistics a random net's pool3 hardly depends on it).
    for m in reference.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # a plain average over the calibration batches
    reference.train()
    with torch.no_grad():
        for seed in range(3):
            reference(_images(8, 64, 10 + seed, smooth=True))
    reference.eval()
    weights = built[0].state_dict()  # the same modules, in the published file's layout
    assert "Mixed_7c.branch_pool.conv.weight" in weights and "fc.weight" in weights
    torch.save(weights, tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    net = load_fid_inception(tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    assert isinstance(net, FIDInceptionV3)
    for smooth, size in ((False, 64), (True, 96)):
        x = _images(2, size, 4, smooth=smooth)
        with torch.no_grad():
            expected = reference(x)[0].reshape(2, 2048)
            got = net(x)
        scale = float(expected.abs().max())
        assert float((expected[0] - expected[1]).abs().max()) > 0.05 * scale  # the features depend on the image
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * scale)
