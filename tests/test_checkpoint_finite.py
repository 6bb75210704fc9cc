"""Weight files with NaN/inf entries are refused at load (hybrid_nes.checkpoint)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hybrid_nes import CheckpointError, load_pretrained
from hybrid_nes import checkpoint as ckpt_lib
from hybrid_nes.model import pretrained_path


def _rewrite(src, dst, edit):
    """Copies a weight file with ``edit(arrays)`` applied and a matching checksum (as a
    diverged run saved by an older version would be: the checksum alone passes it)."""
    with np.load(src, allow_pickle=False) as archive:
        flat = {k: archive[k] for k in archive.files}
    meta = json.loads(str(flat.pop("meta")))
    edit(flat)
    meta["checksum"] = ckpt_lib._checksum(flat)
    np.savez(dst, meta=np.array(json.dumps(meta)), **flat)
    return dst


def _first_param(flat):
    return sorted(k for k in flat if k.startswith("params/") and flat[k].dtype.kind == "f")[0]


@pytest.mark.parametrize("value, kind", [(np.nan, "NaN"), (np.inf, "inf")])
def test_non_finite_parameter_is_a_checkpoint_error_naming_it(tmp_path, value, kind):
    src = pretrained_path("cce")
    with np.load(src, allow_pickle=False) as archive:
        key = _first_param({k: archive[k] for k in archive.files if k != "meta"})

    def poison(flat):
        flat[key] = flat[key].copy()
        flat[key].reshape(-1)[0] = value

    bad = _rewrite(src, tmp_path / "nan.npz", poison)
    with pytest.raises(CheckpointError, match=f"parameter '{key}' has 1 non-finite \\({kind}\\)"):
        ckpt_lib.load(bad)
    with pytest.raises(CheckpointError, match=key):
        load_pretrained("cce", path=bad)


def test_non_finite_statistics_are_refused_too(tmp_path):
    src = pretrained_path("cce")

    def poison(flat):
        key = sorted(k for k in flat if k.startswith("stats/"))[0]
        flat[key] = np.full_like(flat[key], np.nan)

    with pytest.raises(CheckpointError, match="stats/"):
        ckpt_lib.load(_rewrite(src, tmp_path / "stats.npz", poison))


def test_finite_copy_loads_and_save_refuses_nan(tmp_path):
    src = pretrained_path("cce")
    good = _rewrite(src, tmp_path / "same.npz", lambda flat: None)
    ck = ckpt_lib.load(good)
    assert ck.params and ck.stats
    module = next(iter(ck.params))
    name = next(iter(ck.params[module]))
    ck.params[module][name] = np.full_like(ck.params[module][name], np.nan)
    target = tmp_path / "out.npz"
    with pytest.raises(CheckpointError, match=f"params/{module}/{name}"):
        ckpt_lib.save(target, ck)
    assert not target.exists()  # the verify step refuses it before it can replace anything
