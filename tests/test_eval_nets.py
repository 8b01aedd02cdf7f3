"""Loading the standard LPIPS / FID / FVD weight files (hma.eval.nets), with random weights
saved in each file's published layout, since the real files cannot be downloaded here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from hma.errors import CheckpointError, DataError
from hma.eval import metrics as M
from hma.eval.nets import lpips as lpips_module
from hma.eval.nets import (
    LPIPS, FIDInceptionV3, I3DLayer, InceptionI3D, Unavailable, load_fid_inception, load_i3d, load_lpips,
)

ENV_VARS = ("HMA_LPIPS_WEIGHTS", "HMA_ALEXNET_WEIGHTS", "HMA_FID_INCEPTION_WEIGHTS", "HMA_FVD_I3D_WEIGHTS")


@pytest.fixture(autouse=True)
def _no_weight_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No weights from the environment, the torch hub cache or an installed lpips package."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("empty_torch_home")))
    monkeypatch.setattr(lpips_module, "package_file", lambda package, relative: None)


def _randomize(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights and BatchNorm statistics, so loading every buffer matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith("running_mean") or name.endswith("bias"):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
    return net.eval()


def _images(b: int, size: int, seed: int) -> torch.Tensor:
    return (torch.rand(b, size, size, 3, generator=torch.Generator().manual_seed(seed)) * 255).to(torch.uint8)


# -- availability -----------------------------------------------------------------------

def test_absent_weights_are_reported_unavailable() -> None:
    for loader, var in ((load_lpips, "HMA_LPIPS_WEIGHTS"), (load_fid_inception, "HMA_FID_INCEPTION_WEIGHTS"),
                        (load_i3d, "HMA_FVD_I3D_WEIGHTS")):
        status = loader()
        assert isinstance(status, Unavailable)
        assert f"unavailable: set {var} to the path of" in str(status)


def test_a_named_but_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nope.pth does not exist"):
        load_fid_inception(tmp_path / "nope.pth")


# -- LPIPS ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[LPIPS, Path, Path]:
    root = tmp_path_factory.mktemp("lpips")
    src = _randomize(LPIPS(), seed=0)
    with torch.no_grad():
        for i in range(5):  # trained LPIPS weights are non-negative, which makes it a distance
            getattr(src, f"lin{i}").model[1].weight.abs_()
    alex = {f"features.{k}": v for k, v in src.features.state_dict().items()}
    # torchvision's file also holds the classifier, which LPIPS ignores (its 4096x9216 weights
    # are left out here only to keep the test file small).
    alex |= {"classifier.1.bias": torch.zeros(4096), "classifier.4.bias": torch.zeros(4096), "classifier.6.bias": torch.zeros(1000)}
    torch.save(alex, root / "alexnet-owt-7be5be79.pth")
    lin = {f"lin{i}.model.1.weight": getattr(src, f"lin{i}").model[1].weight.clone() for i in range(5)}
    torch.save(lin, root / "alex.pth")
    return src, root / "alex.pth", root / "alexnet-owt-7be5be79.pth"


def test_lpips_loads_the_standard_files_from_the_environment(lpips_files, monkeypatch: pytest.MonkeyPatch) -> None:
    src, lin_path, alex_path = lpips_files
    assert isinstance(load_lpips(lin_path), Unavailable)  # the AlexNet file is needed too
    monkeypatch.setenv("HMA_LPIPS_WEIGHTS", str(lin_path))
    monkeypatch.setenv("HMA_ALEXNET_WEIGHTS", str(alex_path))
    net = load_lpips()
    assert isinstance(net, LPIPS)
    a, b = _images(3, 64, 1), _images(3, 64, 2)
    d = M.lpips(a, b, net)
    assert d.shape == (3,) and bool((d > 0).all())
    assert torch.allclose(d, src.distance(a, b))  # loaded weights are the saved ones
    assert torch.allclose(M.lpips(b, a, net), d)
    assert torch.allclose(M.lpips(a, a, net), torch.zeros(3))
    videos = torch.stack([a, b], dim=1)  # (3, 2, 64, 64, 3)
    assert M.lpips(videos, videos.flip(1), net).shape == (3, 2)


def test_lpips_accepts_safetensors(lpips_files, tmp_path: Path) -> None:
    src, lin_path, alex_path = lpips_files
    save_file(torch.load(lin_path, weights_only=True), tmp_path / "alex.safetensors")
    net = load_lpips(tmp_path / "alex.safetensors", alex_path)
    a, b = _images(2, 48, 3), _images(2, 48, 4)
    assert torch.allclose(net.distance(a, b), src.distance(a, b))


def test_lpips_file_with_a_missing_or_misshaped_key_is_a_clear_error(lpips_files, tmp_path: Path) -> None:
    _, lin_path, alex_path = lpips_files
    lin = torch.load(lin_path, weights_only=True)
    del lin["lin3.model.1.weight"]
    torch.save(lin, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match=r"missing\.pth lacks the key 'lin3\.model\.1\.weight'"):
        load_lpips(tmp_path / "missing.pth", alex_path)
    alex = torch.load(alex_path, weights_only=True)
    alex["features.3.weight"] = torch.zeros(192, 64, 3, 3)
    torch.save(alex, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match=r"shape\.pth has 'features\.3\.weight' of shape \(192, 64, 3, 3\), expected \(192, 64, 5, 5\)"):
        load_lpips(lin_path, tmp_path / "shape.pth")


def test_files_that_are_not_state_dicts_are_rejected(lpips_files, tmp_path: Path) -> None:
    _, lin_path, _ = lpips_files
    torch.save({"epoch": 3}, tmp_path / "not_weights.pth")
    with pytest.raises(CheckpointError, match="expected a state dict of tensors"):
        load_lpips(lin_path, tmp_path / "not_weights.pth")
    (tmp_path / "garbage.pth").write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth is not a plain PyTorch state dict"):
        load_lpips(lin_path, tmp_path / "garbage.pth")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_lpips(tmp_path / "garbage.safetensors", lpips_files[2])


# -- FID InceptionV3 --------------------------------------------------------------------

def test_fid_inception_loads_the_standard_layout(tmp_path: Path) -> None:
    src = _randomize(FIDInceptionV3(), seed=5)
    state = src.state_dict()
    assert "Mixed_7c.branch3x3dbl_3b.bn.running_var" in state and "Conv2d_1a_3x3.conv.weight" in state
    # The file carries the 1008-way classifier of the TF graph; FID uses the pool3 features.
    state |= {"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(state, path)
    net = load_fid_inception(path)
    assert isinstance(net, FIDInceptionV3)
    images = _images(2, 32, 6)
    feats = net.features(images)
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()
    assert torch.allclose(feats[:1], src.features(images[:1]), atol=1e-5)  # loaded weights are the saved ones
    assert M.fid(images, images, net) == pytest.approx(0.0, abs=1e-3)  # also needs a deterministic net

    # torchvision's ImageNet Inception file has an aux head; the FID file does not.
    torch.save({"Conv2d_1a_3x3.conv.weight": state["Conv2d_1a_3x3.conv.weight"], "AuxLogits.fc.weight": torch.zeros(1000, 768)},
               tmp_path / "inception_v3_google.pth")
    with pytest.raises(CheckpointError, match="unexpected key 'AuxLogits.fc.weight'"):
        load_fid_inception(tmp_path / "inception_v3_google.pth")


def test_weights_are_found_where_the_reference_packages_keep_them(lpips_files, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from hma.eval.nets._common import package_file

    src, lin_path, alex_path = lpips_files
    # torchvision and pytorch-fid download into the torch hub cache; the lpips wheel ships its
    # linear layers inside the package.
    checkpoints = tmp_path / "torch_home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copy(alex_path, checkpoints / "alexnet-owt-7be5be79.pth")
    package = tmp_path / "site" / "lpips"
    (package / "weights" / "v0.1").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    shutil.copy(lin_path, package / "weights" / "v0.1" / "alex.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(lpips_module, "package_file", package_file)
    net = load_lpips()
    assert isinstance(net, LPIPS)
    a, b = _images(2, 48, 7), _images(2, 48, 8)
    assert torch.allclose(net.distance(a, b), src.distance(a, b))
    fid_src = _randomize(FIDInceptionV3(), seed=9)
    torch.save(fid_src.state_dict(), checkpoints / "pt_inception-2015-12-05-6726825d.pth")
    fid_net = load_fid_inception()
    assert isinstance(fid_net, FIDInceptionV3)
    images = _images(1, 32, 10)
    assert torch.allclose(fid_net.features(images), fid_src.features(images), atol=1e-5)


# -- FVD I3D ----------------------------------------------------------------------------

def test_i3d_loads_the_standard_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _randomize(InceptionI3D(), seed=7)
    state = src.state_dict()
    assert {"Conv3d_1a_7x7.conv3d.weight", "Mixed_5c.b3b.bn.running_mean", "logits.conv3d.bias"} <= state.keys()
    path = tmp_path / "i3d_pretrained_400.pt"
    torch.save(state, path)
    monkeypatch.setenv("HMA_FVD_I3D_WEIGHTS", str(path))
    net = load_i3d()
    assert isinstance(net, InceptionI3D)
    videos = (torch.rand(2, 9, 20, 16, 3, generator=torch.Generator().manual_seed(8)) * 255).to(torch.uint8)
    logits = net.features(videos)
    assert logits.shape == (2, I3DLayer.LOGITS.dim) and torch.isfinite(logits).all()
    assert torch.allclose(logits[:1], src.features(videos[:1]), atol=1e-5)
    pooled = net.features(videos[:1], layer=I3DLayer.POOL)
    assert pooled.shape == (1, I3DLayer.POOL.dim)
    assert M.frechet_distance(logits, logits) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(DataError, match="at least 9 frames"):
        net.features(videos[:, :8])

    del state["Mixed_4d.b1b.bn.running_var"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match=r"broken\.pt lacks the key 'Mixed_4d\.b1b\.bn\.running_var'"):
        load_i3d(tmp_path / "broken.pt")
