"""The generator's upsampling (``upsample``): the paper's transposed convolution, or resize-convolution."""

from __future__ import annotations

import pytest
import torch

from cgbench.config import resolve
from cgbench.errors import ConfigError
from cgbench.models.networks import ResnetGenerator, init_weights, upsampling


def _interior_periods(kind: str) -> torch.Tensor:
    """The x2 layer's response to a constant input, away from the border: (2, 2) phases of its
    output grid, each phase's mean over the interior (one value per channel)."""
    torch.manual_seed(0)
    layer = init_weights(upsampling(kind, 8, 4, bias=False), 0.5)
    with torch.no_grad():
        out = layer(torch.ones(1, 8, 8, 8))[0, :, 2:-2, 2:-2]
    return torch.stack([out[:, i::2, j::2].mean(dim=(1, 2)) for i in (0, 1) for j in (0, 1)])


def test_resize_convolution_draws_no_checkerboard_where_a_transposed_convolution_does():
    deconv, resize = _interior_periods("deconv"), _interior_periods("resize")
    # A transposed 3x3 kernel at stride 2 covers the four output phases with 1, 2, 2 and 4 taps:
    # a flat input comes out as a 2x2 checkerboard. Resize-convolution gives every pixel all 9 taps.
    assert (deconv.max(0).values - deconv.min(0).values).abs().min() > 1e-2
    torch.testing.assert_close(resize, resize[:1].expand_as(resize), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["deconv", "resize"])
def test_either_generator_maps_an_image_to_an_image_of_its_size(kind):
    torch.manual_seed(0)
    G = init_weights(ResnetGenerator(3, 3, ngf=4, n_blocks=1, upsample=kind))
    out = G(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert out.shape == (2, 3, 32, 32) and out.abs().max() <= 1


def test_an_unknown_upsampling_names_the_valid_ones():
    with pytest.raises(ConfigError, match="upsample 'bilinear' is not one of: deconv, resize"):
        resolve("tiny", sets={"upsample": "bilinear"})
    assert resolve("cpu").upsample == "resize" and resolve("paper").upsample == "deconv"
