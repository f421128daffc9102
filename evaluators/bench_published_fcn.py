"""Benchmark: images per second of the published FCN-8s scoring path at Cityscapes' label resolution.

Run ``python -m evaluators.bench_published_fcn [--device cpu] [--threads 2]``. One timed pass is
what :func:`~evaluators.published_fcn.published_fcn_predict` does for one generated image: the
Pillow resize from the generator's resolution up to the labels', the preprocessing, the forward
pass of the published network and the arg-max. Random weights cost the same as the real ones.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from cgbench.models.published_fcn import PublishedFCN8s
from cgbench.timing import median_seconds
from evaluators.published_fcn import published_fcn_predict


def bench_published_fcn(
    device: torch.device | str = "cpu",
    height: int = 1024,
    width: int = 2048,
    repeats: int = 3,
    generated_size: int = 256,
    model: PublishedFCN8s | None = None,
) -> dict[str, float | int | str]:
    """Median seconds per image (batch 1) of the scoring path, after one untimed warm-up pass.

    ``model`` defaults to the published network with random weights; TF32 follows the caller's
    ``torch.backends`` settings and is reported.
    """
    device = torch.device(device)
    start = time.perf_counter()
    model = (model or PublishedFCN8s()).to(device).eval()
    generated = torch.randint(0, 256, (1, 3, generated_size, generated_size), dtype=torch.uint8)
    seconds = median_seconds(lambda: published_fcn_predict(model, generated, (height, width)), repeats,
                             device=device)
    return {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "tf32": torch.backends.cudnn.allow_tf32 if device.type == "cuda" else False,
        "input": f"{generated_size}x{generated_size} -> {width}x{height}",
        "repeats": repeats,
        "seconds_per_image": seconds,
        "images_per_s": 1 / seconds,
        "wall_s": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tf32", action="store_true", help="allow TF32 on CUDA (default: strict fp32)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = args.tf32
    print(json.dumps(bench_published_fcn(args.device, args.height, args.width, args.repeats)))


if __name__ == "__main__":
    main()
