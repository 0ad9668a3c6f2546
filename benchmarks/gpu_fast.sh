#!/usr/bin/env bash
# The device check for issue #26: `experiment=fast_gpu` cold (empty JAX compilation cache), then
# warm, seeds 0 and 1, then the alternating-flip ablation warm; phases printed per run by
# time_to_accuracy.py. Run from a copy of the repo (src/ conf/ benchmarks/) with the data zip at
# $ZIP; $EXTRA adds overrides (a CPU rehearsal shrinks the run with it); logs and records go to $OUT.
set -u -o pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
export XDG_CACHE_HOME=${XDG_CACHE_HOME_RUN:-/tmp/cifarx-xdg}   # JAX's compilation cache lives here: empty at first
mkdir -p "$OUT/bench"
runs=${RUNS:-/tmp/cifarx-runs}
rm -rf "$XDG_CACHE_HOME" "$runs"
python3 -c 'import jax, keras; print("jax", jax.__version__, jax.devices(), "keras", keras.__version__)' || exit 1
tta="python3 benchmarks/time_to_accuracy.py --experiment fast_gpu --data-root $ZIP --cache ${DATA_CACHE:-/tmp/cifarx-data} --out $OUT/bench"
echo "== cold (empty compilation cache), seed 0"
$tta --seeds 0 --keep "$runs/cold" -- ${EXTRA:-} 2>&1 | tee "$OUT/cold.log" || exit 1
echo "== warm, seeds 0 1"
$tta --seeds 0 1 --keep "$runs/warm" -- ${EXTRA:-} 2>&1 | tee "$OUT/warm.log" || exit 1
if [ -z "${NO_ABLATION:-}" ]; then
  echo "== warm, seeds 0 1, random flip instead of alternating (ablation)"
  $tta --seeds 0 1 --keep "$runs/randflip" -- data.augment.alternate_flip=false ${EXTRA:-} 2>&1 | tee "$OUT/randflip.log"
fi
du -sh "$XDG_CACHE_HOME/cifarx/jax"; ls "$XDG_CACHE_HOME/cifarx/jax" | wc -l
# the record: warm seed 0's run directory as the tool wrote it, without its training checkpoints
ls -la "$runs/warm/fast_gpu_seed0"; tar cf "$OUT/fast_gpu_run.tar" -C "$runs/warm" --exclude=last.keras --exclude=best.keras --exclude=.cifarx.lock fast_gpu_seed0
# every run's metrics, config and log
(cd "$runs" && tar czf "$OUT/runs_meta.tgz" */*/metrics.json */*/config.yaml */*/train.log */*/history.csv)
ls -la "$OUT" "$OUT/bench"
