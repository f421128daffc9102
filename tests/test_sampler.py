"""The unpaired sampler: a pure function of (seed, step), the paper's augmentation, disjoint halves."""

import numpy as np
import torch

from cgbench.data.sampler import UnpairedSampler, to_uint8, to_unit_range


def _images(n: int = 10, size: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    scene = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, size, size).contiguous()
    return scene, scene + 100  # every pixel names its scene: X = i, Y = 100 + i


def test_batches_depend_only_on_seed_and_step():
    x, y = _images()
    a = UnpairedSampler(x, y, image_size=8, batch_size=2, seed=3)
    b = UnpairedSampler(x, y, image_size=8, batch_size=2, seed=3)
    for step in (0, 7, 123):
        assert all(torch.equal(p, q) for p, q in zip(a.batch(step, torch.device("cpu")), b.batch(step, torch.device("cpu"))))
    other = UnpairedSampler(x, y, image_size=8, batch_size=2, seed=4)
    assert any(not np.array_equal(a.indices(s)[0], other.indices(s)[0]) for s in range(5))


def test_x_is_walked_once_per_epoch_and_y_is_drawn_independently():
    x, y = _images()
    sampler = UnpairedSampler(x, y, image_size=8, batch_size=2, seed=0)
    epoch = np.concatenate([sampler.indices(s)[0] for s in range(sampler.steps_per_epoch)])
    assert sorted(epoch) == list(range(10))
    same_scene = sum(int(np.array_equal(*sampler.indices(s))) for s in range(200))
    assert same_scene < 20  # unpaired: Y's scenes are not X's


def test_disjoint_halves_never_share_a_scene():
    x, y = _images()
    sampler = UnpairedSampler(x, y, image_size=8, batch_size=1, seed=0, disjoint=True)
    xs = {int(i) for s in range(100) for i in sampler.indices(s)[0]}
    ys = {int(i) for s in range(100) for i in sampler.indices(s)[1]}
    assert xs and ys and not xs & ys and len(xs | ys) == 10


def test_crop_flip_and_range():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, 3, 10, 10), generator=g, dtype=torch.uint8)
    sampler = UnpairedSampler(x, x.clone(), image_size=8, batch_size=4, seed=0)
    bx, _ = sampler.batch(0, torch.device("cpu"))
    assert bx.shape == (4, 3, 8, 8) and bx.min() >= -1 and bx.max() <= 1
    windows = [x[i, :, t:t + 8, l:l + 8] for i in range(4) for t in range(3) for l in range(3)]
    for crop in to_uint8(bx):  # every sample is a crop of some scene, possibly flipped
        assert any(torch.equal(crop, w) or torch.equal(crop, w.flip(-1)) for w in windows)
    assert torch.equal(to_uint8(to_unit_range(x)), x)
