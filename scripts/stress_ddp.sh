#!/usr/bin/env bash
# Exit statuses under repetition (not run by CI): `cgbench run --nproc 2 --preset tiny` RUNS times
# in a row, then `pytest -q tests/test_distributed.py` ROUNDS times, each in a throwaway folder and
# MLflow store; prints how many ended with each exit status. Every run must exit 0: an abort at
# exit (status 134, "terminate called without an active exception") or a hang shows up here.
# Usage: bash scripts/stress_ddp.sh [RUNS [ROUNDS]]   (from the repository root, cgbench installed;
# defaults 50 and 10; ROUNDS 0 skips pytest). Exit status 0 when every run and round passed.
set -u
runs=${1:-50}
rounds=${2:-10}
repo=$(pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/cgbench-stress.XXXXXX")
export MLFLOW_TRACKING_URI="sqlite:///$work/mlflow.db" PYTHONUNBUFFERED=1
echo "stress: $runs x cgbench run --nproc 2 --preset tiny, $rounds x pytest -q tests/test_distributed.py; logs in $work"

declare -A run_status=() round_status=()
for i in $(seq 1 "$runs"); do
  (cd "$work" && cgbench run --nproc 2 --preset tiny --no-progress >"run-$i.out" 2>"run-$i.err")
  rc=$?
  run_status[$rc]=$(( ${run_status[$rc]:-0} + 1 ))
  [ "$rc" -eq 0 ] || echo "run $i: exit $rc (see $work/run-$i.err)"
done
for i in $(seq 1 "$rounds"); do
  python -m pytest -q -p no:cacheprovider --basetemp="$work/pytest-$i" "$repo/tests/test_distributed.py" \
    >"$work/pytest-$i.log" 2>&1
  rc=$?
  round_status[$rc]=$(( ${round_status[$rc]:-0} + 1 ))
  [ "$rc" -eq 0 ] || echo "pytest round $i: exit $rc (see $work/pytest-$i.log)"
done

failed=0
echo "cgbench run --nproc 2, exit statuses:"
for rc in "${!run_status[@]}"; do
  echo "  status $rc: ${run_status[$rc]} of $runs"
  [ "$rc" -eq 0 ] || failed=1
done
if [ "$rounds" -gt 0 ]; then
  echo "pytest -q tests/test_distributed.py, exit statuses:"
  for rc in "${!round_status[@]}"; do
    echo "  status $rc: ${round_status[$rc]} of $rounds"
    [ "$rc" -eq 0 ] || failed=1
  done
fi
exit $failed
