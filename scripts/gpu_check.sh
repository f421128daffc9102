#!/usr/bin/env bash
# The GPU checks as one script for a lent CUDA machine (docs/speed.md, "The GPU check"): every figure
# of the speed work in under 8 minutes, the most important first. Each step runs under its own time
# limit, and all of them together under GPU_CHECK_BUDGET seconds (default 450): a step that would
# pass the budget gets what is left, or is skipped. Figures land in $OUT (or ./gpu-check) as JSON,
# each step's output in <step>.log; summary.json gathers the headline figures and how each step ended.
# Usage: bash scripts/gpu_check.sh   (from the repository root, cgbench installed: pip install -e .)
set -u
out=${OUT:-gpu-check}; mkdir -p "$out"; out=$(cd "$out" && pwd)
export PYTHONUNBUFFERED=1 MLFLOW_TRACKING_URI="sqlite:///$out/mlflow.db"
budget=${GPU_CHECK_BUDGET:-450}
data=data/synthcity-128-check  # 300 training scenes: a step costs the same whatever the set's size
began=$SECONDS
: > "$out/steps.tsv"

step() {  # step NAME LIMIT COMMAND...: COMMAND under min(LIMIT, what the budget has left) seconds
  local name=$1 limit=$2; shift 2
  local left=$(( budget - (SECONDS - began) ))
  (( limit > left )) && limit=$left
  if (( limit < 10 )); then
    printf '%s\tskipped\t0\n' "$name" >> "$out/steps.tsv"; echo "== $name: skipped, the budget is spent"; return 0
  fi
  echo "== $name (at most ${limit} s)"
  local t0=$SECONDS status
  timeout -k 5 "$limit" "$@" > "$out/$name.log" 2>&1
  status=$?
  tail -n 14 "$out/$name.log"
  printf '%s\t%s\t%s\n' "$name" "$status" "$(( SECONDS - t0 ))" >> "$out/steps.tsv"
  echo "== $name: exit $status after $(( SECONDS - t0 )) s$( (( status == 124 )) && echo ', timed out')"
  return "$status"
}

environment() {
  nvidia-smi
  python3 - "$out/environment.json" <<'PY'
import json, os, subprocess, sys
from importlib.metadata import version
import torch
gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                     capture_output=True, text=True).stdout.strip()
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
env = {"gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
       "mlflow": version("mlflow"), "cgbench_commit": commit, "cpu_count": os.cpu_count()}
json.dump(env, open(sys.argv[1], "w"), indent=2)
print(env)
PY
}

published_fcn() {
  python3 - "$out/published-fcn.json" <<'PY'
import json, statistics, sys, time, torch
from cgbench.models.published_fcn import PublishedFCN8s
dev = torch.device("cuda")
net = PublishedFCN8s().to(dev).eval()
x = torch.randn(1, 3, 1024, 2048, device=dev) * 50
figures = {}
for tf32 in (False, True):
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    with torch.inference_mode():
        for _ in range(3):
            net(x)
        times = []
        for _ in range(10):
            torch.cuda.synchronize(); t = time.perf_counter(); out = net(x); torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    figures["tf32" if tf32 else "fp32"] = {"seconds_per_image": med, "images_per_s": 1 / med}
    print(f"published FCN-8s (random weights) 1024x2048, tf32={tf32}: {med*1000:.1f} ms/image, {1/med:.2f} images/s")
json.dump(figures, open(sys.argv[1], "w"), indent=2)
PY
}

mps_share() {  # the same sharing under CUDA MPS (its daemon started here; stopped by the caller)
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  nvidia-cuda-mps-control -d || { echo "MPS did not start"; return 3; }
  cgbench bench --data "$data" --preset paper --set amp=off --share 4 --share 8 --share-seconds 6 \
    --json "$out/share-mps.json"
}
export -f environment published_fcn mps_share
export out data

# 1. What the figures were measured on; the data (made here once).
step environment 30 bash -c environment
[ -d "$data" ] || step data 60 cgbench data synth --out "$data" --size 128 --train 300 --val 64 --workers 8
# 2. The paper preset's step in fp32: fast vs plain, with and without CUDA graphs, the GPU's busy
#    fraction, the fp32/TF32 peaks and floors, tracking, evaluation (and, if that failed, without graphs).
step bench-paper 130 cgbench bench --data "$data" --preset paper --set amp=off --json "$out/bench-paper.json" \
  || step bench-paper-eager 90 cgbench bench --data "$data" --preset paper --set amp=off --set cuda_graphs=off \
       --no-eval --tracking-iters 0 --json "$out/bench-paper-eager.json"
# 3. That the captured step trains as the eager one (and resumes): the figures above mean nothing
#    otherwise. (The file's CPU tests run with the suite; -k keeps the CUDA ones.)
step equivalence 100 python3 -m pytest -q -p no:cacheprovider -rs --tb=short tests/test_cuda_graphs.py \
  -k "captured or with_cuda_graphs" --junitxml="$out/equivalence.xml"
# 4. N runs sharing the GPU (a table's runs on one GPU), with and without graphs, the many first (two
#    commands: each writes its JSON, whatever happens to the other); then under MPS.
step share-8-4 80 cgbench bench --data "$data" --preset paper --set amp=off --share 8 --share 4 --share-seconds 6 \
  --json "$out/share-8-4.json"
step share-2-1 60 cgbench bench --data "$data" --preset paper --set amp=off --share 2 --share 1 --share-seconds 6 \
  --json "$out/share-2-1.json"
if command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY="$out/mps-pipe" CUDA_MPS_LOG_DIRECTORY="$out/mps-log"
  step share-mps 70 bash -c mps_share
  echo quit | nvidia-cuda-mps-control 2>/dev/null  # also when the step timed out
  unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
else
  printf 'share-mps\tskipped\t0\n' >> "$out/steps.tsv"; echo "== share-mps: skipped, no nvidia-cuda-mps-control"
fi
# 5. The checks from before: one run under DDP (NCCL, --nproc 1), and the published FCN-8s's throughput.
step ddp 45 cgbench run --data "$data" --preset paper --set amp=off --iters 200 --nproc 1 --no-progress
step published-fcn 30 bash -c published_fcn

python3 - "$out" <<'PY'
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path
out = Path(sys.argv[1])
read = lambda name: json.loads((out / name).read_text()) if (out / name).exists() else None  # noqa: E731
summary = {"steps": {n: {"exit": s, "seconds": int(t)} for n, s, t in
                     (line.split("\t") for line in (out / "steps.tsv").read_text().splitlines())}}
summary["environment"] = read("environment.json")
bench = read("bench-paper.json") or read("bench-paper-eager.json")
if bench:
    p = bench["presets"]["paper"]
    summary["paper"] = {"fast_s": p["fast"]["median"], "plain_s": p["plain"]["median"], "ratio": p["ratio"],
                        "speed": p["speed"], "gpu": p.get("gpu"), "cuda_peak_bytes": p["cuda_peak_bytes"]}
for name, files in (("share", ("share-2-1.json", "share-8-4.json")), ("share-mps", ("share-mps.json",))):
    for share in filter(None, map(read, files)):  # member-steps/s of N runs, per variant
        paper = share["share"]["paper"]
        summary.setdefault(name, {}).update({n: {way: r[way]["member_steps_per_s"] for way in paper["variants"]}
                                             for n, r in paper["runs"].items()})
if (out / "equivalence.xml").exists():
    suite = next(ET.parse(out / "equivalence.xml").getroot().iter("testsuite"))
    summary["equivalence"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
summary["published_fcn"] = read("published-fcn.json")
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary, indent=1))
PY
echo "== done in $(( SECONDS - began )) s; figures in $out"
