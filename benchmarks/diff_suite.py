"""Cost of an exact equilibrium gradient (``hybrid_nes.diff``) against the cost of the solve.

For each cell (8x8 CE, 32x32 CE, 8x8 CCE; ME selection, random N(0, 1) games) and a few
games per cell, median wall times (warm: compiled, Numba cache loaded) of

- ``solve``: ``solvers.solve(game, concept)`` (the exact solver alone);
- ``forward``: ``jax.jit(diff.solve)`` (the same solver through ``pure_callback``, plus the
  free-set classification and, on a face, the face LPs);
- ``grad``: ``jax.jit(jax.value_and_grad(lambda g: sum(diff.solve(g).joint * v)))``
  (forward + implicit backward);
- ``jvp``: ``jax.jit(diff.jvp)`` along a random payoff direction (forward + one KKT solve);
- ``body``: the forward callback's NumPy body alone, and ``callback_floor``: an empty
  ``pure_callback`` of the same sizes under ``jit`` (where the forward's time goes);
- ``kernel``: the compiled forward kernel alone (``fast_forward.forward_np``, called from
  NumPy), and ``ffi``: ``jit`` of the same kernel as an XLA FFI call (``diff.ffi.call``), where
  the kernel applies (the compiled single-game Newton's configurations; interior games and
  faces certified without an LP);

and the ratios ``backward / solve`` (``backward = grad - forward``), ``grad / solve``,
``grad / forward`` and ``jvp / solve``. The target of issue 24 is a gradient within 2x of
the solve. The timed calls are interleaved (every function on every game in turn, then
the next repeat), so a change in the machine's load hits all of them alike. For the 8x8
cells, ``jit(vmap(value_and_grad))`` over a batch of 64 games is also timed per game against
``solvers.solve`` on each of them (``measure_batch``: the batch amortises the callback floor).

``--baseline REF`` also times ``hybrid_nes.diff`` of git revision ``REF`` (e.g. the
version before a change) in the same run, on the same games: ``base_forward_ms``,
``base_grad_ms``, ``base_grad/solve``.

cvxpylayers is not installed (no network access to install it here), so there is no
comparison with it.

    python -m benchmarks.diff_suite [--quick] [--baseline REF] [--render]
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.results import markdown_table, write_json_atomic
from solvers.atomic import write_text_atomic

CELLS: tuple[tuple[str, tuple[int, ...]], ...] = (("ce", (8, 8)), ("ce", (32, 32)), ("cce", (8, 8)))
#: Games in the vmapped batch of a cell (``--quick``: a quarter); 0: no batch column (32x32
#: CE: 64 solves and gradients per repeat take minutes on the shared CPU).
BATCH = {"8x8": 64, "32x32": 0}


def load_baseline(ref: str):
    """``hybrid_nes.diff`` at git revision ``ref`` (the package ``hybrid_nes/diff/``, or the
    single module ``hybrid_nes/diff.py`` of older revisions), imported as ``diff_baseline``
    (it uses this tree's ``solvers``)."""
    root = Path(tempfile.mkdtemp())
    files = subprocess.run(["git", "ls-tree", "-r", "--name-only", ref, "hybrid_nes/diff/"], check=True,
                           capture_output=True, text=True).stdout.split()
    if not files:
        files = ["hybrid_nes/diff.py"]
    for name in files:
        source = subprocess.run(["git", "show", f"{ref}:{name}"], check=True, capture_output=True, text=True).stdout
        source = source.replace("from hybrid_nes.diff import", "from diff_baseline import")
        source = source.replace("hybrid_nes.diff.", "diff_baseline.")
        target = root / name.replace("hybrid_nes/diff", "diff_baseline", 1)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source)
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module("diff_baseline")
    finally:
        sys.path.remove(str(root))


def _interleaved(fns: dict, games: int, repeats: int) -> dict:
    """``{name: [median seconds per game]}``, every (game, function) timed in turn per repeat."""
    times = {name: [[] for _ in range(games)] for name in fns}
    for _ in range(repeats):
        for g in range(games):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn(g)
                times[name][g].append(time.perf_counter() - t0)
    return {name: [float(np.median(t)) for t in per] for name, per in times.items()}


def measure_batch(concept: str, shape: tuple[int, ...], batch: int, repeats: int) -> dict:
    """Per-game times of ``jit(vmap(value_and_grad))`` over ``batch`` games (one callback for
    the batch) against ``solvers.solve`` on each of the same games, interleaved."""
    import jax
    import jax.numpy as jnp

    import solvers
    from hybrid_nes import diff

    jax.config.update("jax_enable_x64", True)
    v = jnp.asarray(np.random.default_rng(123).standard_normal(shape))
    games = np.stack([np.random.default_rng(1000 + s).standard_normal((len(shape),) + shape) for s in range(batch)])
    gj = jnp.asarray(games)
    val_grad = jax.jit(jax.vmap(jax.value_and_grad(
        lambda g: jnp.sum(diff.solve(g, concept, on_degenerate="nan").joint * v))))
    fwd = jax.jit(jax.vmap(lambda g: diff.solve(g, concept).joint))

    def solve_all():
        for g in games:
            solvers.solve(g, concept)

    fns = {"solve": solve_all, "vforward": lambda: fwd(gj).block_until_ready(),
           "vgrad": lambda: jax.block_until_ready(val_grad(gj))}
    for fn in fns.values():
        fn()
    status = np.asarray(jax.vmap(lambda g: diff.solve(g, concept).status)(gj))
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    per = {name: float(np.median(t)) / batch for name, t in times.items()}
    return {"batch": batch, "batch_differentiable": int(np.sum(status == 0)),
            "batch_solve_ms": 1e3 * per["solve"], "batch_forward_ms": 1e3 * per["vforward"],
            "batch_grad_ms": 1e3 * per["vgrad"], "batch_grad/solve": per["vgrad"] / per["solve"]}


def measure(concept: str, shape: tuple[int, ...], num_games: int, repeats: int, baseline=None) -> dict:
    import jax
    import jax.numpy as jnp

    import solvers
    from hybrid_nes import diff
    from hybrid_nes.diff import fast_forward, ffi
    from hybrid_nes.diff.checks import prepare
    from hybrid_nes.diff.forward import forward, packed_size
    from hybrid_nes.diff.problem import resolve

    jax.config.update("jax_enable_x64", True)  # global: the callbacks run on XLA's threads
    v = jnp.asarray(np.random.default_rng(123).standard_normal(shape))
    fwd = jax.jit(lambda g: diff.solve(g, concept).joint)
    val_grad = jax.jit(jax.value_and_grad(
        lambda g: jnp.sum(diff.solve(g, concept, on_degenerate="nan").joint * v)))
    tangent = jax.jit(lambda g, d: diff.jvp(g, d, concept, on_degenerate="nan")[1].joint)
    games = [np.random.default_rng(seed).standard_normal((len(shape),) + shape) for seed in range(num_games)]
    gjs = [jnp.asarray(g) for g in games]
    dirs = [jnp.asarray(np.random.default_rng(100 + seed).standard_normal(g.shape)) for seed, g in enumerate(games)]
    # Where the forward's time goes: the callback body alone (NumPy, no JAX), and an empty
    # callback of the same input and output sizes under jit (the pure_callback floor).
    prep = [prepare(g, concept, "me", None, None, None, 0.0, None, None, 1e-10, None, 1e-7, 1e-6, "raise")
            for g in gjs]
    cfg = prep[0].cfg
    inputs = []
    for p in prep:
        theta = resolve(cfg, p.preset, p.plus, *p.arrays)
        inputs.append(np.concatenate([np.asarray(p.payoffs).reshape(-1), np.asarray(theta.base),
                                      np.asarray(theta.eps_hat), np.asarray(theta.eps_plus)]))
    size = packed_size(cfg)
    empty = jax.jit(lambda x: jax.pure_callback(lambda a: np.zeros(a.shape[:-1] + (size,)),
                                                jax.ShapeDtypeStruct((size,), x.dtype), x))
    f64 = np.dtype(np.float64)
    fast = fast_forward.applies(cfg) and ffi.available()
    served = [fast and fast_forward.forward_np(cfg, x)[1] for x in inputs]
    ffi_fwd = jax.jit(lambda x: ffi.call(cfg, x)[0]) if fast else None
    fns = {
        "solve": lambda i: solvers.solve(games[i], concept),
        "body": lambda i: forward(cfg, f64, inputs[i]),
        "callback_floor": lambda i: empty(inputs[i]).block_until_ready(),
        "forward": lambda i: fwd(gjs[i]).block_until_ready(),
        "grad": lambda i: jax.block_until_ready(val_grad(gjs[i])),
        "jvp": lambda i: tangent(gjs[i], dirs[i]).block_until_ready(),
    }
    if fast:
        fns["kernel"] = lambda i: fast_forward.forward_np(cfg, inputs[i])
        fns["ffi"] = lambda i: ffi_fwd(inputs[i]).block_until_ready()
    if baseline is not None:
        base_fwd = jax.jit(lambda g: baseline.solve(g, concept).joint)
        base_grad = jax.jit(jax.value_and_grad(
            lambda g: jnp.sum(baseline.solve(g, concept, on_degenerate="nan").joint * v)))
        fns["base_forward"] = lambda i: base_fwd(gjs[i]).block_until_ready()
        fns["base_grad"] = lambda i: jax.block_until_ready(base_grad(gjs[i]))
    rows = []
    for i in range(num_games):
        for fn in fns.values():
            fn(i)  # compile, load caches
        out = diff.solve(gjs[i], concept)
        rows.append({"seed": i, "status": int(out.status), "face": not bool(np.all(np.asarray(out.support))),
                     "free": int(np.asarray(out.free).sum()), "served": bool(served[i])})
    if baseline is not None:
        for i in range(num_games):
            g_new = np.asarray(val_grad(gjs[i])[1])
            g_old = np.asarray(base_grad(gjs[i])[1])
            rows[i]["max_abs_grad_diff_vs_base"] = float(np.max(np.abs(g_new - g_old)))
    timed = _interleaved(fns, num_games, repeats)
    for i, row in enumerate(rows):
        row.update({f"{name}_s": timed[name][i] for name in fns})
    med = {name: float(np.median(timed[name])) for name in fns}
    solve_s, fwd_s, grad_s = med["solve"], med["forward"], med["grad"]
    backward_s = max(grad_s - fwd_s, 0.0)
    result = {
        "concept": concept, "shape": "x".join(map(str, shape)), "games": num_games,
        "on_face": sum(r["face"] for r in rows), "differentiable": sum(r["status"] == 0 for r in rows),
        "median_free_rows": float(np.median([r["free"] for r in rows])),
        "solve_ms": 1e3 * solve_s, "forward_ms": 1e3 * fwd_s, "grad_ms": 1e3 * grad_s,
        "jvp_ms": 1e3 * med["jvp"], "body_ms": 1e3 * med["body"], "callback_floor_ms": 1e3 * med["callback_floor"],
        "backward_ms": 1e3 * backward_s, "backward/solve": backward_s / solve_s,
        "grad/solve": grad_s / solve_s, "grad/forward": grad_s / fwd_s, "jvp/solve": med["jvp"] / solve_s,
        "served": sum(r["served"] for r in rows),
        "kernel_ms": 1e3 * med["kernel"] if fast else float("nan"),
        "ffi_ms": 1e3 * med["ffi"] if fast else float("nan"),
        "per_game": rows,
    }
    if baseline is not None:
        result.update({
            "base_forward_ms": 1e3 * med["base_forward"], "base_grad_ms": 1e3 * med["base_grad"],
            "base_grad/solve": med["base_grad"] / solve_s, "grad_speedup": med["base_grad"] / grad_s,
        })
    return result


#: Measurements behind design choices in ``hybrid_nes.diff`` (earlier runs on the same
#: shared machine; not re-measured by this suite).
NOTES = """## Notes (earlier measurements behind the design, not re-run here)

- LAPACK (`np.linalg.eigh` / `cholesky`) inside the callbacks took 0.04-1.4 s at 8x8 to
  32x32 CE on the loaded 2-core CPU, BLAS threads competing with XLA's; a dense
  `M_F diag(sigma) M_F^T` GEMM for the free covariance ~60 ms at 32x32 CE. Hence the
  single-threaded Numba Hessian (`solvers.kernels.hessian_one`), Cholesky and Cholesky
  inverse (`hybrid_nes/diff/linalg.py`); the eigendecomposition is the last resort.
- Newton may certify an 8x8 ME-CE on a face without facial reduction (masses of 1e-77, its
  duals drifting), as `solvers.solve` does; the implicit step needs the face. At `435ced4`
  the forward ran the facial-reduction LP there (one cold HiGHS LP, ~2-10 ms with the load),
  Newton on the face, and the face-change check (two more LPs, warm-started from the first
  LP's basis: ~6x cheaper than cold at 8x8 CE): 3 of the 5 8x8 CE games here, grad/solve
  23.8. Warm-starting the first LP from another game's basis did not help (0.8-4x the cold
  time at 8x8 CE); dual simplex beat primal simplex and IPM 2-8x.
- The faces of random games are those of iterated dominance (whole actions off the support,
  the equality rows touching no joint of the face): on 8x8 CE seeds 0-39, 31 games on a
  face, every one with no implicit equality among the rows touching it. `face_cert`
  certifies such a face without an LP (support: Newton's duals on the equality rows, or a
  covering LP of a few dozen variables; no more support and no hidden equality: a Slater
  point from the face optimum and `-H_AA^-1`), with margins against every payoff
  perturbation of 2-norm `face_tol ||G||`, a uniform version of the two-LP check. On those
  seeds 30 of 31 face games were certified (6x6 CE seeds 0-29: 26 of 26), with outputs
  identical to the LP path; on 8x8 CE seeds 1000-1063 a few games whose face has implicit
  equalities among its rows (a 2x2 matching-pennies core) still take the LPs (~10-20 ms).
- 8x8 CCE at `1118dad`: the forward's NumPy body was about the solve (`solvers.solve` also
  validates and builds a `Solution`) and the rest of the gradient the `pure_callback` floor
  (~0.2-0.7 ms on the loaded CPU, about the solve itself): grad/solve 2.9. Since then
  interior games run one Numba kernel (`hybrid_nes.diff.fast_forward`) inside XLA as a
  typed-FFI custom call (`hybrid_nes.diff.ffi`: a Numba `cfunc` reading XLA's
  `XLA_FFI_CallFrame`); its floor, `ffi - kernel`, is a few microseconds (an XLA FFI call
  with the legacy untyped API cost ~7 us on the quiet machine; XLA:CPU logs that it will be
  removed, hence the typed API). Until `cc5499b` the kernel served interior games only: on
  8x8 CE faces it failed, then the callback solved again. Since then it also runs the face
  path that needs no LP (`face_cert`'s guess and certificate, Newton on the face, the
  classification, `-H_FF^-1` and the Slater check: `forward._guess_face` and
  `_finish_kernel`, bit for bit the callback's output); only faces that need the covering
  LP or the face LPs (or `eps_hat != 0` on a face) still pay the failed try. A/B on 8x8 CE
  seeds 0-15 (11 on a face, all 11 served), `jit(value_and_grad)`, load ~5: face games
  0.53-0.55 ms (grad/solve 1.30-1.43) against 1.41 ms (3.54) at `cc5499b`; process CPU per
  game 1.11-1.20 ms against 1.92 ms (grad/solve 2.0 against 3.4). With the FFI off the
  same face games took 0.50-0.55 ms against 1.38 ms at `cc5499b`: the callback path's only
  runtime change is the face-change perturbation's norm, `v @ v` (a BLAS call inside the
  callback, presumably competing with XLA's threads as in the first note), now a Numba
  loop shared with the kernel. At this load the `pure_callback` floor was small, so the
  kernel and the callback cost about the same on these games; the kernel's gain is the
  floor (0.2-0.8 ms at higher load, see the table of the forward's time). On the batch's
  8x8 CE games (seeds 1000-1063) the kernel serves 51 of 64; of the other 13, 4 need the
  covering LP, 5 have a guessed face (or no face) that fails the Slater/degeneracy check
  (the LPs decide), 4 leave the first Newton pass short of `tol` (`refine_batch`).
- Run-to-run spread on the shared CPU (load average 5.5-7.5): the full run before this one
  (commit `5e186a3`, the same forward and backward less a refactor of `face_cert`'s
  bincounts) gave grad/solve 8x8 CE 2.76 (base 20.2), 32x32 CE 1.60 (base 1.70), 8x8 CCE
  2.84 (base 2.67), batched 8x8 CE 3.16 and 8x8 CCE 2.47. 32x32 CE and 8x8 CCE run the same
  code as the base: their base/new differences are noise.
- `pure_callback` converts every input and output array of a callback separately: the
  forward packs its 4 inputs and 5 outputs into one each (an empty callback with 5 outputs
  took ~0.4 ms against ~0.2 ms with 1). Up to `DENSE_ADJOINT_MAX` duals the forward also
  returns `-H_FF^-1`, so the backward is a product in JAX with no second callback (the
  callback solve remains for singular blocks on faces and for statuses to report).
- `diff.jvp` solves by callback: behind `lax.cond` (as in the VJP), `jit(jvp)` on a face
  game segfaulted in JAX 0.10.2.
"""


def render(data: dict) -> str:
    """The markdown of a result ``data`` (``main``'s JSON)."""
    results = data["cells"]
    quick = data["quick"]
    num_games = results[0]["games"]
    repeats = data.get("repeats", 3 if quick else 7)
    baseline = data.get("baseline")
    batch_cols = ["concept", "shape", "batch", "batch_differentiable", "batch_solve_ms", "batch_forward_ms",
                  "batch_grad_ms", "batch/single_grad", "batch_grad/solve"]
    cols = ["concept", "shape", "games", "on_face", "served", "differentiable", "median_free_rows", "solve_ms",
            "forward_ms", "grad_ms", "jvp_ms", "backward_ms", "backward/solve", "grad/solve", "grad/forward",
            "jvp/solve"]
    split_cols = ["concept", "shape", "served", "solve_ms", "body_ms", "callback_floor_ms", "kernel_ms", "ffi_ms",
                  "forward_ms", "grad_ms"]
    base_cols = ["concept", "shape", "solve_ms", "base_forward_ms", "base_grad_ms", "base_grad/solve",
                 "forward_ms", "grad_ms", "grad/solve", "grad_speedup"]
    lines = [
        "# diff_suite: cost of an exact equilibrium gradient (hybrid_nes.diff)",
        "",
        f"mode: {'quick' if quick else 'full'}; {num_games} random N(0,1) games per cell, ME selection, "
        f"median of {repeats} warm runs per game (all functions interleaved), then the median over games; "
        "float64; shared 2-core CPU (loaded: absolute times vary several-fold between runs, the ratios "
        "within one run less).",
        "",
        "- `solve`: `solvers.solve` alone; `forward`: `jit(diff.solve)` (`served` games, interior or "
        "on a face certified without an LP: one compiled kernel inside XLA through the typed FFI, "
        "`hybrid_nes.diff.ffi`; the others: the "
        "solver through `pure_callback`, free-set classification; on a face, the face certified from Newton's iterate "
        "(`hybrid_nes.diff.face_cert`), or where it cannot be the facial-reduction LP and the two "
        "perturbed LPs of the face-change check); `grad`: `jit(value_and_grad)` of a linear "
        "function of the joint (forward + implicit backward); `jvp`: `jit(diff.jvp)` along a random "
        "direction; `backward = grad - forward`.",
        "- Target (issue 24): gradient within 2x of the solve.",
        "- cvxpylayers: not installed (not installable offline here), no comparison.",
        "",
        markdown_table([{k: r[k] for k in cols} for r in results], cols),
        "",
        "## Where the forward's time goes",
        "",
        "`body`: the forward callback's NumPy body alone (`hybrid_nes.diff.forward.forward`: the solve, "
        "and on a face its certificate and Newton on the face (or the LPs), then the classification and, "
        "up to `DENSE_ADJOINT_MAX` duals, `-H_FF^-1`); "
        "`callback_floor`: `jit` of an empty `pure_callback` with the same input and output sizes "
        "(JAX's dispatch and the conversion of the callback's arrays). `forward ~ body + callback_floor` "
        "(+ the small XLA part: normalisation, selection, marginals) for games the kernel does not "
        "serve. `kernel`: the compiled forward (`hybrid_nes.diff.fast_forward`: the same solve, "
        "face certificate and Newton on the face, classification and `-H_FF^-1`) called from NumPy; "
        "`ffi`: `jit` of it as an XLA FFI call (`hybrid_nes.diff.ffi.call`); `ffi - kernel` is the FFI "
        "floor. `served`: games it serves (the others, faces that need an LP, run the callback).",
        "",
        markdown_table([{k: r[k] for k in split_cols} for r in results], split_cols),
        "",
    ]
    batched = [r for r in results if r.get("batch")]
    if batched:
        lines += [
            "## Batched: `jax.vmap` over a batch of games (one FFI call, at most one callback per batch)",
            "",
            "`batch_*_ms`: per game, `jit(vmap(diff.solve))` (forward) and `jit(vmap(value_and_grad))` "
            "(grad) over `batch` random games (seeds 1000+), against `solvers.solve` on each of the same "
            "games in turn; `batch/single_grad`: the per-game batched gradient over the single-game one "
            "of the table above (other games). One FFI call serves the batch; if the kernel does not "
            "serve some game of it, one `pure_callback` runs on those games (and amortises its floor).",
            "",
            markdown_table([{k: r[k] for k in batch_cols} for r in batched], batch_cols),
            "",
        ]
    if baseline:
        lines += [
            f"## Side by side with `{baseline}` (same run, same games)",
            "",
            f"`base_*`: `hybrid_nes.diff` at `{baseline}`; `grad_speedup = base_grad / grad`.",
            "",
            markdown_table([{k: r[k] for k in base_cols} for r in results], base_cols),
            "",
        ]
    lines += [NOTES]
    return "\n".join(lines)


def main(quick: bool = False, out_dir: Path = Path("benchmarks/results"), baseline: str | None = None) -> dict:
    num_games, repeats = (2, 3) if quick else (5, 7)
    base = load_baseline(baseline) if baseline else None
    results = []
    for concept, shape in CELLS:
        row = measure(concept, shape, num_games, repeats, base)
        batch = BATCH["x".join(map(str, shape))] // (4 if quick else 1)
        if batch:
            row.update(measure_batch(concept, shape, batch, repeats))
            row["batch/single_grad"] = row["batch_grad_ms"] / row["grad_ms"]
        results.append(row)
    data = {"suite": "diff_suite", "quick": quick, "repeats": repeats, "machine": platform.platform(),
            "processor": platform.processor(), "baseline": baseline, "cells": results,
            "cvxpylayers": "not installed (not installable offline here): no comparison"}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "diff_suite.json", data)
    text = render(data)
    write_text_atomic(out_dir / "diff_suite.md", text)
    print(text)
    return data


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--baseline", default=None, help="git revision whose hybrid_nes/diff.py to time alongside")
    parser.add_argument("--render", action="store_true", help="rewrite the markdown from the JSON in --out")
    args = parser.parse_args()
    if args.render:
        rendered = render(json.loads((args.out / "diff_suite.json").read_text()))
        write_text_atomic(args.out / "diff_suite.md", rendered)
        print(rendered)
    else:
        main(quick=args.quick, out_dir=args.out, baseline=args.baseline)
