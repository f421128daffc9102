"""The published evaluation network of the CycleGAN and pix2pix papers, in PyTorch.

The FCN scores in both papers come from one Caffe model, ``fcn-8s-cityscapes.caffemodel``, whose
geometry is given by the authors' public ``deploy.prototxt``. :class:`PublishedFCN8s` rebuilds that
geometry layer for layer, under the Caffe layer names, so the weights of the ``.caffemodel`` (read by
:mod:`cgbench.models.caffemodel`) land in it one blob per tensor:

* the VGG-16 trunk ``conv1_1`` … ``conv5_3``: 3×3 convolutions, stride 1, ``conv1_1`` padded by 100
  and every other by 1, a ReLU after each, and a 2×2 stride-2 max-pool after each block, rounded up
  as Caffe rounds (``ceil_mode``);
* ``fc6_cs`` (7×7 to 4096, no padding) and ``fc7_cs`` (1×1 to 4096), a ReLU after each (their
  dropout is inert at test time);
* ``score_fr``, a 1×1 convolution to 20 outputs (the 19 train classes and a 20th the public script
  does not expect: see :mod:`evaluators.published_fcn`);
* three learned transposed convolutions without bias, ``upscore2`` (4×4, stride 2),
  ``upscore_pool4`` (4×4, stride 2) and ``upscore8`` (16×16, stride 8), fused with ``score_pool4``
  (1×1 on pool4, cropped at offset 5) and ``score_pool3`` (1×1 on pool3, cropped at offset 9), and
  the final crop at offset 31 back to the input's size.

Input: BGR images minus :data:`BGR_MEAN`, on 0-255 values (:func:`preprocess`), any size.
Output: ``(N, 20, H, W)`` scores at the input's size.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BGR_MEAN", "NUM_OUTPUTS", "PublishedFCN8s", "caffe_crop", "preprocess"]

NUM_OUTPUTS = 20
BGR_MEAN = (72.78044, 83.21195, 73.45286)  # the public script's mean, in BGR order, on 0-255 values

# (block, layers, in channels, out channels) of the VGG-16 trunk
_TRUNK = ((1, 2, 3, 64), (2, 2, 64, 128), (3, 3, 128, 256), (4, 3, 256, 512), (5, 3, 512, 512))


def caffe_crop(x: torch.Tensor, offset: int, height: int, width: int) -> torch.Tensor:
    """Caffe's ``Crop`` layer on the two spatial axes: ``x[..., offset:offset+height, offset:offset+width]``."""
    if x.shape[-2] < offset + height or x.shape[-1] < offset + width:
        raise ValueError(f"cannot crop {height}x{width} at offset {offset} from {tuple(x.shape[-2:])}")
    return x[..., offset:offset + height, offset:offset + width]


def preprocess(images_uint8: torch.Tensor) -> torch.Tensor:
    """``(N, H, W, 3)`` or ``(N, 3, H, W)`` RGB uint8 → the network's input: BGR float minus the mean."""
    if images_uint8.shape[-1] == 3 and images_uint8.shape[1] != 3:
        images_uint8 = images_uint8.permute(0, 3, 1, 2)
    bgr = images_uint8.flip(1).float()
    mean = torch.tensor(BGR_MEAN, dtype=bgr.dtype, device=bgr.device).view(1, 3, 1, 1)
    return bgr - mean


class PublishedFCN8s(nn.Module):
    """FCN-8s with the layer names, shapes and crops of ``fcn-8s-cityscapes`` (see the module doc)."""

    def __init__(self) -> None:
        super().__init__()
        for block, layers, cin, cout in _TRUNK:
            for i in range(1, layers + 1):
                pad = 100 if (block, i) == (1, 1) else 1
                self.add_module(f"conv{block}_{i}", nn.Conv2d(cin if i == 1 else cout, cout, 3, padding=pad))
        self.fc6_cs = nn.Conv2d(512, 4096, 7)
        self.fc7_cs = nn.Conv2d(4096, 4096, 1)
        self.score_fr = nn.Conv2d(4096, NUM_OUTPUTS, 1)
        self.upscore2 = nn.ConvTranspose2d(NUM_OUTPUTS, NUM_OUTPUTS, 4, stride=2, bias=False)
        self.score_pool4 = nn.Conv2d(512, NUM_OUTPUTS, 1)
        self.upscore_pool4 = nn.ConvTranspose2d(NUM_OUTPUTS, NUM_OUTPUTS, 4, stride=2, bias=False)
        self.score_pool3 = nn.Conv2d(256, NUM_OUTPUTS, 1)
        self.upscore8 = nn.ConvTranspose2d(NUM_OUTPUTS, NUM_OUTPUTS, 16, stride=8, bias=False)
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.relu = nn.ReLU(inplace=True)

    def _block(self, x: torch.Tensor, block: int, layers: int) -> torch.Tensor:
        for i in range(1, layers + 1):
            x = self.relu(getattr(self, f"conv{block}_{i}")(x))
        return self.pool(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pools = {}
        h = x
        for block, layers, _, _ in _TRUNK:
            h = pools[block] = self._block(h, block, layers)
        h = self.relu(self.fc6_cs(h))
        h = self.relu(self.fc7_cs(h))
        up2 = self.upscore2(self.score_fr(h))
        fuse4 = up2 + caffe_crop(self.score_pool4(pools[4]), 5, *up2.shape[-2:])
        up4 = self.upscore_pool4(fuse4)
        fuse3 = up4 + caffe_crop(self.score_pool3(pools[3]), 9, *up4.shape[-2:])
        return caffe_crop(self.upscore8(fuse3), 31, height, width)
