#!/usr/bin/env bash
# Trains the shipped NES weights (CCE and CE, concurrently) on one accelerator within a
# wall-clock budget, then times inference there. Used on a lent H100; see
# hybrid_nes/pretrained/MODEL_CARD.md for the run that produced the shipped weights.
#
#   bash benchmarks/train_on_device.sh OUT_DIR BUDGET_SECONDS
#
# Each run compiles and times every training shape first, then trains the number of
# steps that fits BUDGET_SECONDS (hybrid-nes train --time-budget). Export the checkpoints
# afterwards with `hybrid-nes export OUT_DIR/cce/checkpoint.npz hybrid_nes/pretrained/nes_cce.npz`.
set -u
out=${1:?usage: train_on_device.sh OUT_DIR BUDGET_SECONDS}
budget=${2:?usage: train_on_device.sh OUT_DIR BUDGET_SECONDS}
here=$(cd "$(dirname "$0")/.." && pwd)
configs=${NES_TRAIN_CONFIGS:-$here/benchmarks/train_configs}
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# two processes share the accelerator: give each a fixed share of its memory
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.45}
# float32 matmuls in full precision (no TF32): the dual loss compares nearby objective values
export JAX_DEFAULT_MATMUL_PRECISION=${JAX_DEFAULT_MATMUL_PRECISION:-highest}
mkdir -p "$out/cce" "$out/ce"
python3 -c "import jax, haiku, optax, numba, hybrid_nes.train; print('jax', jax.__version__, 'haiku', haiku.__version__, 'optax', optax.__version__, jax.devices())" || exit 1
for c in cce ce; do
  python3 -m hybrid_nes.cli train --config "$configs/nes_${c}_gpu.json" \
    --out "$out/$c" --no-resume --no-progress --no-weights --time-budget "$budget" >"$out/$c.log" 2>&1 &
done
wait
for c in cce ce; do
  echo "== $c"; grep -h -E "time_budget|stopped|Error|error" "$out/$c.log" | cut -c1-600; tail -n 2 "$out/$c/log.jsonl" | cut -c1-600
done
python3 - <<'PY'
import time, numpy as np, jax
from hybrid_nes.model import load_pretrained
from hybrid_nes.sampling import sample_batch
for concept, shape, batch in (("cce", (8, 8), 4096), ("cce", (16, 16), 4096), ("ce", (8, 8), 4096)):
    model = load_pretrained(concept)
    g, sel = sample_batch(jax.random.PRNGKey(0), batch, shape, ("me",))
    g = np.asarray(g); sel = type(sel)(*(np.asarray(x) for x in sel))
    model.predict_normalised(g, sel, allow_untrained=True)
    best = min((lambda t: (model.predict_normalised(g, sel, allow_untrained=True), time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(5))
    print(f"inference {concept} {shape} batch {batch}: {batch / best:,.0f} games/s ({jax.devices()[0].device_kind})")
PY
