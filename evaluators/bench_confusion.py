"""Micro-benchmark: confusion-matrix update cost next to the FCN forward it follows.

Run ``python -m evaluators.bench_confusion`` (CPU). The update must cost well under 10% of the
segmenter's forward pass, so that scoring a split is dominated by the network, not the bookkeeping.
"""

from __future__ import annotations

import argparse

import torch

from cgbench.confusion import ConfusionMatrix
from cgbench.models.segmenter import FCN8s
from cgbench.timing import median_seconds


def benchmark(
    batch: int = 16,
    height: int = 128,
    width: int = 256,
    num_classes: int = 19,
    repeats: int = 10,
    seed: int = 0,
) -> dict[str, float]:
    """Median seconds of one FCN8s forward, its arg-max, and one :meth:`ConfusionMatrix.update`.

    The ground truth has ~10% ignored (255) pixels, as Cityscapes labels do.
    """
    torch.manual_seed(seed)
    model = FCN8s(num_classes=num_classes).eval()
    images = torch.randn(batch, 3, height, width)
    target = torch.randint(0, num_classes, (batch, height, width), dtype=torch.uint8)
    target[torch.rand(batch, height, width) < 0.1] = 255
    metric = ConfusionMatrix(num_classes)
    with torch.no_grad():
        logits = model(images)
        pred = logits.argmax(1)
        forward_s = median_seconds(lambda: model(images), repeats, warmup=2)
    argmax_s = median_seconds(lambda: logits.argmax(1), repeats, warmup=2)
    update_s = median_seconds(lambda: metric.update(target, pred), repeats, warmup=2)
    return {
        "forward_s": forward_s,
        "argmax_s": argmax_s,
        "update_s": update_s,
        "update_over_forward": update_s / forward_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    r = benchmark(args.batch, args.height, args.width, repeats=args.repeats)
    print(
        f"batch {args.batch}×3×{args.height}×{args.width}, {torch.get_num_threads()} threads, "
        f"medians of {args.repeats}:\n"
        f"  FCN8s forward        {r['forward_s'] * 1e3:9.2f} ms\n"
        f"  arg-max over classes {r['argmax_s'] * 1e3:9.2f} ms\n"
        f"  confusion update     {r['update_s'] * 1e3:9.2f} ms  "
        f"({100 * r['update_over_forward']:.2f}% of the forward)"
    )


if __name__ == "__main__":
    main()
