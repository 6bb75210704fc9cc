"""The fast inference path (``hybrid_nes.inference``) of the shipped networks.

Random networks (CCE and CE, 2 and 3 players) are checked against the Haiku network in
``tests/test_nes_layers.py`` (``test_fast_inference_computes_the_network``), which shares
their compiled reference.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from hybrid_nes.inference import chunk_size
from hybrid_nes.loss import duals_to_flat
from hybrid_nes.model import load_pretrained
from hybrid_nes.network import make_network
from hybrid_nes.sampling import sample_batch


@pytest.mark.parametrize("concept", ["cce", "ce"])
def test_shipped_networks_predict_as_the_haiku_network(concept):
    model = load_pretrained(concept)
    shape = (8, 8)
    games, sel = sample_batch(jax.random.PRNGKey(3), 24, shape, ("me", "mre"))
    duals, _ = jax.jit(make_network(model.config).apply, static_argnums=5)(
        model.params, model.statistics(shape), None, games, sel, False
    )
    want = np.asarray(duals_to_flat(duals, concept))
    got = model.predict_normalised(np.asarray(games), sel)  # padded to 32 games
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    assert np.std(want) > 1e-2


def test_chunk_size_divides_the_batch():
    assert chunk_size(4096, (8, 8)) == 64
    assert chunk_size(4096, (16, 16)) == 16
    assert chunk_size(8, (8, 8)) == 8
    assert chunk_size(4096, (256, 256)) == 1  # one game larger than a chunk
    for batch in (8, 64, 4096):
        for shape in ((2, 2), (5, 7), (3, 3, 3)):
            assert batch % chunk_size(batch, shape) == 0
