#!/usr/bin/env bash
# The GPU checks, as one script for a lent CUDA machine (see docs/speed.md): the paper preset's
# fast vs plain step in fp32, one training run under DDP with NCCL (--nproc 1), and the published
# FCN-8s's throughput at Cityscapes' full label resolution. Figures land in $OUT (or ./gpu-check).
# Usage: bash scripts/gpu_check.sh   (from the repository root, cgbench installed)
set -u
out=${OUT:-gpu-check}; mkdir -p "$out"
export PYTHONUNBUFFERED=1 MLFLOW_TRACKING_URI="sqlite:///$out/mlflow.db"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, mlflow; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'mlflow', mlflow.__version__)"
cgbench data synth --out data/synthcity-128 --size 128 --workers 8 >/dev/null
echo "== bench --preset paper (fp32: amp off), fast vs plain"
timeout 200 cgbench bench --data data/synthcity-128 --preset paper --set amp=off --json "$out/bench-paper-cuda.json"
echo "bench exit $?"
echo "== cgbench run --nproc 1 (DDP, NCCL), paper preset fp32, 300 iterations"
timeout 120 cgbench run --data data/synthcity-128 --preset paper --set amp=off --iters 300 --nproc 1 --no-progress
echo "run exit $?"
echo "== published FCN-8s (fcn-8s-cityscapes geometry, random weights), 1024x2048, batch 1"
timeout 60 python3 - <<'PY'
import statistics, time, torch
from cgbench.models.published_fcn import PublishedFCN8s
dev = torch.device("cuda")
net = PublishedFCN8s().to(dev).eval()
x = torch.randn(1, 3, 1024, 2048, device=dev) * 50
for tf32 in (False, True):
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    with torch.inference_mode():
        for _ in range(3):
            net(x)
        times = []
        for _ in range(10):
            torch.cuda.synchronize(); t = time.perf_counter(); out = net(x); torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(f"published FCN-8s tf32={tf32}: median {med*1000:.1f} ms/image, {1/med:.2f} images/s, "
          f"out {tuple(out.shape)}, peak {torch.cuda.max_memory_allocated()/2**30:.1f} GiB")
PY
echo "fcn exit $?"
