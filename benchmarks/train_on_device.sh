#!/usr/bin/env bash
# Trains NES weights on one accelerator within a wall-clock budget, then times inference
# there. Used on a lent H100; see hybrid_nes/pretrained/MODEL_CARD.md for the runs that
# produced the shipped weights.
#
#   bash benchmarks/train_on_device.sh OUT_DIR BUDGET_SECONDS [CONFIG ...]
#
# CONFIG names files in benchmarks/train_configs (without .json); default
# nes_ce_gpu_4shapes (fine-tunes the shipped CE network: the weaker of the two). Runs
# go one after another, each with the whole budget (NES_PARALLEL=1: all at once, sharing
# the accelerator, each with the whole budget). Each run compiles and times its
# training shapes first, then trains the number of steps that fits (hybrid-nes train
# --time-budget). Lessons from the first lease: compilation, not training, is what a
# short lease limits (7-9 shapes in two concurrent processes took 360-380 s of 400), so
# use few shapes, one process at a time, and GPU autotuning off (4 shapes: 104 s).
# A lease's call carries .whl (dm-haiku, jmp and highspy wheels, installed with pip
# --target), runs/parents (the fine-tunes' parents) and runs/jax_cache (see below).
# Export afterwards, e.g.
#   hybrid-nes export OUT_DIR/nes_ce_gpu_4shapes/checkpoint.npz hybrid_nes/pretrained/nes_ce.npz \
#       --shape 2x2 --shape 3x3 --shape 4x4 --shape 5x5 --shape 6x6 --shape 8x8 --shape 10x10 \
#       --shape 12x12 --shape 16x16 --hardware "..."
set -u
out=${1:?usage: train_on_device.sh OUT_DIR BUDGET_SECONDS [CONFIG ...]}
budget=${2:?usage: train_on_device.sh OUT_DIR BUDGET_SECONDS [CONFIG ...]}
shift 2
runs=("$@")
[ ${#runs[@]} -eq 0 ] && runs=(nes_ce_gpu_4shapes)
here=$(cd "$(dirname "$0")/.." && pwd)
configs=${NES_TRAIN_CONFIGS:-$here/benchmarks/train_configs}
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# float32 matmuls in full precision (no TF32): the dual loss compares nearby objective values
export JAX_DEFAULT_MATMUL_PRECISION=${JAX_DEFAULT_MATMUL_PRECISION:-highest}
export XLA_FLAGS="${XLA_FLAGS:---xla_gpu_autotune_level=0}"
# Compiled steps persist: a rerun in the same lease reuses them, and so does a later lease
# when the cache comes back with the results (OUT_DIR/jax_cache.tar.gz; unpack it here with
# `tar -xzf jax_cache.tar.gz -C runs/`) and travels again (carry runs/jax_cache). Hits
# need the same jax, device kind, flags, configs and network code; on a 2-core CPU a
# hit cut a 3-shape setup from 50 s to 27 s. Leases lost 104-427 s to compilation.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$here/runs/jax_cache}
mkdir -p "$JAX_COMPILATION_CACHE_DIR"
echo "compilation cache: $(find "$JAX_COMPILATION_CACHE_DIR" -type f | wc -l) entries"
mkdir -p "$out"
cd "$here" || exit 1
python3 -c "import jax, haiku, optax, numba, hybrid_nes.train; print('jax', jax.__version__, 'haiku', haiku.__version__, 'optax', optax.__version__, jax.devices())" || exit 1
train_one() {  # each run's log, config, checkpoint and validation log stay in OUT_DIR/RUN
  mkdir -p "$out/$1"
  python3 -m hybrid_nes.cli train --config "$configs/$1.json" \
    --out "$out/$1" --no-resume --no-progress --no-weights --time-budget "$budget" >"$out/$1/train.log" 2>&1
  echo "== $1"; grep -h -E "time_budget|stopped|Error|error" "$out/$1/train.log" | cut -c1-600
  tail -n 2 "$out/$1/log.jsonl" | cut -c1-600
}
if [ "${NES_PARALLEL:-0}" = 1 ]; then
  # several small runs share one GPU (each is launch-bound, not compute-bound); they
  # compile on separate CPU cores, so the budget is not spent twice on compilation
  export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-$(python3 -c "print(round(0.9 / ${#runs[@]}, 2))")}
  for run in "${runs[@]}"; do train_one "$run" & done
  wait
else
  for run in "${runs[@]}"; do train_one "$run"; done
fi
# a lease returns at most 8 files: the checkpoint holds each run's config, so drop the copy
for run in "${runs[@]}"; do rm -f "$out/$run/config.json"; done
tar -czf "$out/jax_cache.tar.gz" -C "$(dirname "$JAX_COMPILATION_CACHE_DIR")" "$(basename "$JAX_COMPILATION_CACHE_DIR")"
echo "compilation cache: $(find "$JAX_COMPILATION_CACHE_DIR" -type f | wc -l) entries, $(du -h "$out/jax_cache.tar.gz" | cut -f1) packed"
# inference as a user runs it: XLA autotuning on (it is off above only to compile quickly)
XLA_FLAGS= python3 - <<'PY'
import time, numpy as np, jax
from hybrid_nes.model import load_pretrained
from hybrid_nes.sampling import sample_batch
for concept, shape, batch in (("cce", (8, 8), 4096), ("cce", (16, 16), 4096), ("cce", (32, 32), 4096),
                              ("ce", (8, 8), 4096), ("ce", (16, 16), 4096)):
    model = load_pretrained(concept)
    g, sel = sample_batch(jax.random.PRNGKey(0), batch, shape, ("me",))
    g = np.asarray(g); sel = type(sel)(*(np.asarray(x) for x in sel))
    model.predict_normalised(g, sel, allow_untrained=True)
    best = min((lambda t: (model.predict_normalised(g, sel, allow_untrained=True), time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(5))
    print(f"inference {concept} {shape} batch {batch}: {batch / best:,.0f} games/s ({jax.devices()[0].device_kind})")
PY
