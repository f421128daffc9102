"""The evaluator network: shapes, size, a quick overfit, and the torchvision option."""

import pytest
import torch
from torch import nn

from cgbench.errors import CgbenchError
from cgbench.models.segmenter import FCN8s, build_segmenter


@pytest.mark.parametrize("size", [(32, 32), (64, 128), (48, 80), (33, 47)])
def test_fcn8s_output_shape(size):
    model = FCN8s(num_classes=19).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 19, *size)


def test_fcn8s_rejects_too_small_images():
    with pytest.raises(ValueError, match="at least 32"):
        FCN8s()(torch.randn(1, 3, 16, 64))


@pytest.mark.parametrize("width, classes", [(32, 19), (4, 19), (8, 5)])
def test_fcn8s_parameter_count(width, classes):
    """The architecture's count: five VGG stages of two bias-free 3x3 convs with batch norm, the
    fc6/fc7 analogue, three 1x1 score heads and three bias-free learned upsamplings."""
    w, c = width, classes
    stages = [(3, w), (w, 2 * w), (2 * w, 4 * w), (4 * w, 4 * w), (4 * w, 4 * w)]
    expected = sum(9 * i * o + 2 * o + 9 * o * o + 2 * o for i, o in stages)
    expected += 9 * 4 * w * 8 * w + 2 * 8 * w + 8 * w * 8 * w + 2 * 8 * w  # fc
    expected += (8 * w + 1) * c + 2 * (4 * w + 1) * c  # score_fr, score_pool4, score_pool3
    expected += c * c * (4 * 4 + 4 * 4 + 16 * 16)  # upscore2, upscore_pool4, upscore8
    assert sum(p.numel() for p in FCN8s(num_classes=classes, width=width).parameters()) == expected


def _toy_scene(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A 64×64 'street': road (0) below, sky (10) above, a building (2) and a car (13)."""
    g = torch.Generator().manual_seed(seed)
    label = torch.full((64, 64), 10, dtype=torch.long)
    label[40:] = 0
    x0 = 8 + 16 * seed
    label[12:40, x0:x0 + 20] = 2
    label[32:44, 40 - 16 * seed:56 - 16 * seed] = 13
    palette = torch.zeros(19, 3)
    palette[0], palette[2], palette[10], palette[13] = (
        torch.tensor([-0.5, -0.5, -0.5]),
        torch.tensor([0.3, -0.2, -0.4]),
        torch.tensor([-0.2, 0.2, 0.9]),
        torch.tensor([0.8, 0.1, 0.1]),
    )
    image = palette[label].permute(2, 0, 1) + 0.1 * torch.randn(3, 64, 64, generator=g)
    return image, label


def test_fcn8s_overfits_two_images():
    torch.manual_seed(0)
    images, labels = zip(*(_toy_scene(s) for s in (0, 1)))
    x, y = torch.stack(images), torch.stack(labels)
    model = FCN8s(num_classes=19)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    acc = (logits.argmax(1) == y).float().mean().item()
    assert losses[-1] < 0.25 * losses[0]
    assert acc > 0.9


def test_fcn_resnet50_builds_offline_and_returns_logits():
    model = build_segmenter("fcn_resnet50", num_classes=19).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (1, 19, 64, 64)


def test_build_segmenter_fcn8s_and_unknown_arch():
    assert isinstance(build_segmenter("fcn8s", num_classes=5, width=8), FCN8s)
    with pytest.raises(CgbenchError, match="fcn8s, fcn_resnet50"):
        build_segmenter("unet")
