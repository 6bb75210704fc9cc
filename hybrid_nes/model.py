"""``NESModel``: a trained network that predicts the duals of batches of games.

    model = hybrid_nes.load_pretrained("cce")
    duals = model.predict_duals(games, selection="me")          # [B, K], normalised units
    duals = model.predict_duals(games, selection="me", units="payoff")

Units. The selection problem is posed on the normalised game (DESIGN §5). *Normalised*
duals ``alpha'`` belong to ``solvers.normalise(game)``; *payoff-unit* duals belong to
the raw game: ``alpha_p = s_p alpha'_p`` with ``s_p = NormalisedGame.scale[p]``, both
giving the same joint. ``duals_to_payoff_units`` / ``duals_to_normalised_units`` convert.
Flat duals use the ``solvers.gains`` layout ``[B, K]``.

Player counts. One network serves one player count well (its BatchNorm statistics and
training games are per shape); ``load_pretrained`` returns the 2-player network with the
shipped networks of other player counts attached (``NESModel.add_network``): every
method takes games of any covered count and runs the network trained on it.

Inference uses BatchNorm statistics calibrated per game shape (shipped for the training
shapes, computed once and cached for any other shape), so one game scores the same
alone as in a batch. It runs ``hybrid_nes.inference``: the same function as the Haiku
network in inference mode, with BatchNorm folded into the weights (once per shape,
cached) and the batch processed in cache-sized chunks. The jitted forward pass is
compiled once per (shape, batch bucket): batches are padded to a power of two.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hybrid_nes import checkpoint as ckpt_lib
from hybrid_nes.calibration import FIRST_USE_CALIBRATION, calibrate_statistics
from hybrid_nes.inference import fold_params, make_inference
from hybrid_nes.network import NetworkConfig, make_network
from hybrid_nes.sampling import SelectionInputs, check_shape, selection_inputs
from hybrid_nes.train import TrainConfig
from solvers.gains import check_concept, constraint_player, num_constraints
from solvers.game import NormalisedGame, as_game_batch, normalise_batch
from solvers.selection import Selection, as_selection, resolve_selection

__all__ = [
    "NESModel",
    "load_pretrained",
    "pretrained_path",
    "PRETRAINED_PLAYERS",
    "duals_to_payoff_units",
    "duals_to_normalised_units",
    "MAX_JOINT_ACTIONS",
]

#: Largest ``|A|`` one game may have (activations are [B, N, |A|, 32] floats).
MAX_JOINT_ACTIONS = 1 << 16
#: Largest batch sent through the network at once; bigger inputs are chunked.
MAX_CHUNK = 4096
#: Player counts with shipped networks (``pretrained_path``): 2 in ``nes_{concept}.npz``,
#: N >= 3 in ``nes_{concept}_{N}p.npz``.
PRETRAINED_PLAYERS = (2, 3)


def _player_scale(scale: np.ndarray, shape: Sequence[int], concept: str) -> np.ndarray:
    """``[B, K]`` the scale ``s_p`` of each constraint's player."""
    owner = constraint_player(tuple(shape), concept)
    return np.asarray(scale)[..., owner]


def duals_to_payoff_units(duals: np.ndarray, scale: np.ndarray, shape: Sequence[int], concept: str) -> np.ndarray:
    """Normalised flat duals ``[B, K]`` -> payoff-unit duals ``alpha_p = s_p alpha'_p``.

    Args:
      duals: ``[B, K]`` (or ``[K]``) duals of the normalised games.
      scale: ``[B, N]`` (or ``[N]``) ``NormalisedGame.scale``.
      shape: the action counts ``(A1..AN)``.
      concept: "cce" or "ce".
    """
    return np.asarray(duals) * _player_scale(scale, shape, check_concept(concept))


def duals_to_normalised_units(duals: np.ndarray, scale: np.ndarray, shape: Sequence[int], concept: str) -> np.ndarray:
    """Inverse of ``duals_to_payoff_units``: ``alpha'_p = alpha_p / s_p``."""
    return np.asarray(duals) / _player_scale(scale, shape, check_concept(concept))


def _bucket(batch: int) -> int:
    """The padded size of a chunk of ``batch`` games: the next power of two (1, 2, 4, ...).

    One compilation per size; a single game is not padded (it would pay the inference of
    the padding: ``benchmarks/results/hybrid_nes_constants.md``).
    """
    return 1 << (batch - 1).bit_length()


def chunk_buckets(batch: int) -> frozenset[int]:
    """The padded batch sizes ``predict_normalised`` runs a batch of ``batch`` games as
    (one jitted compilation per size and game shape)."""
    full, rest = divmod(batch, MAX_CHUNK)
    return frozenset(([_bucket(MAX_CHUNK)] if full else []) + ([_bucket(rest)] if rest else []))


class NESModel:
    """A trained Neural Equilibrium Solver (one concept).

    Attributes:
      config: the ``NetworkConfig``.
      concept: "cce" or "ce".
      meta: the weight file's metadata (training config, history, wall time, ...).
      trained_shapes: shapes with shipped BatchNorm statistics.
      own_players: player counts this network was trained on.
      players: player counts served: ``own_players`` and those of the networks attached
        with ``add_network``.
    """

    def __init__(self, config: NetworkConfig, params: Any, stats: dict, meta: dict | None = None):
        self.config = config
        self.params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params)
        self.meta = dict(meta or {})
        self._stats = {tuple(sorted(k)): jax.tree_util.tree_map(jnp.asarray, v) for k, v in stats.items()}
        self.trained_shapes = tuple(sorted(self._stats))
        train_cfg = self.meta.get("config", {})
        shapes = train_cfg.get("shapes") or [list(s) for s in self.trained_shapes]
        self.own_players = tuple(sorted({len(s) for s in shapes})) or (2,)
        self._networks: dict[int, NESModel] = {}  # player count -> attached network
        self._files: dict[int, Path] = {}  # player count -> weight file loaded on first use
        self.presets = tuple(train_cfg.get("presets", ("me", "mre")))
        self._folded: dict[tuple[int, ...], Any] = {}
        # (folded weights, payoffs [B, N, A1..AN], sel) -> flat duals [B, K]
        self._forward = jax.jit(make_inference(config))

    @property
    def concept(self) -> str:
        return self.config.concept

    @property
    def players(self) -> tuple[int, ...]:
        return tuple(sorted({*self.own_players, *self._networks, *self._files}))

    # -- player counts -------------------------------------------------------------------
    def add_network(self, other: NESModel) -> NESModel:
        """Serves games of ``other``'s player counts with ``other`` (same concept); returns self.

        Raises:
          ValueError: ``other`` is of another concept, covers a player count this network
            was trained on, or has networks attached itself.
        """
        if not isinstance(other, NESModel) or other.concept != self.concept:
            raise ValueError(f"other must be a {self.concept.upper()} NESModel, got {other!r}")
        clash = set(other.own_players) & set(self.own_players)
        if clash or other._networks or other._files:
            raise ValueError(f"other covers {other.players}-player games; this network already serves {sorted(clash)}"
                             if clash else "other has networks attached itself")
        self._networks.update({n: other for n in other.own_players})
        return self

    def attach_file(self, num_players: int, path: str | os.PathLike) -> NESModel:
        """Like ``add_network`` for the weight file at ``path``, loaded on the first use of a
        ``num_players``-player game (``load_pretrained``: 2-player users never load it)."""
        if num_players in self.own_players:
            raise ValueError(f"this network already serves {num_players}-player games")
        self._files[num_players] = Path(path)
        return self

    def network_for(self, num_players: int) -> NESModel:
        """The network that serves ``num_players``-player games: an attached one, else this one.

        Raises:
          hybrid_nes.checkpoint.CheckpointError: the attached weight file is missing,
            corrupt, of the other concept or not for ``num_players``-player games.
        """
        if num_players in self._files:
            file = self._files[num_players]
            other = NESModel.from_file(file)
            if other.concept != self.concept or num_players not in other.own_players:
                raise ckpt_lib.CheckpointError(f"{str(file)!r} holds a {other.concept.upper()} network for "
                                               f"{other.own_players}-player games, not {num_players}-player "
                                               f"{self.concept.upper()}")
            del self._files[num_players]
            self.add_network(other)
        return self._networks.get(num_players, self)

    def _route(self, shape: Sequence[int]) -> NESModel | None:
        """The attached network for games of ``shape``, or None where this one serves them."""
        net = self.network_for(len(tuple(shape)))
        return None if net is self else net

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> NESModel:
        """Loads weights written by ``hybrid_nes.weights.write_weights`` (or a checkpoint)."""
        ck = ckpt_lib.load(path)
        cfg = ck.meta.get("config", {})
        try:
            config = NetworkConfig.from_dict(dict(cfg["network"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ckpt_lib.CheckpointError(f"{str(path)!r}: metadata lacks a valid network config: {err}") from err
        model = cls(config, ck.params, ck.stats, ck.meta)
        model._check_params(path)
        return model

    def _check_params(self, path) -> None:
        net = make_network(self.config)
        shape = self.trained_shapes[0] if self.trained_shapes else (2, 2)
        payoffs = jnp.zeros((1, len(shape), *shape), jnp.float32)
        sel = SelectionInputs(jnp.zeros((1, *shape)), jnp.zeros((1, len(shape))), jnp.full((1, len(shape)), jnp.inf), jnp.full((1,), jnp.inf))
        template = jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), payoffs, sel, True))[0]
        got = jax.tree_util.tree_map(lambda x: x.shape, self.params)
        want = jax.tree_util.tree_map(lambda x: x.shape, template)
        if got != want:
            raise ckpt_lib.CheckpointError(f"{str(path)!r}: parameters do not match the network config {self.config}")

    # -- BatchNorm statistics ------------------------------------------------------------
    def has_statistics(self, shape: Sequence[int]) -> bool:
        """Whether ``shape``'s BatchNorm statistics are at hand (shipped or calibrated already)."""
        if (net := self._route(shape)) is not None:
            return net.has_statistics(shape)
        return tuple(sorted(shape)) in self._stats

    def statistics(self, shape: Sequence[int]):
        """BatchNorm statistics for ``shape`` (shipped, or calibrated once and cached)."""
        if (net := self._route(shape)) is not None:
            return net.statistics(shape)
        # Population statistics pool over players and cells, so they do not depend on the
        # players' order: one entry per sorted shape keeps predictions player-equivariant.
        shape = tuple(sorted(shape))
        if shape not in self._stats:
            train_cfg = TrainConfig.from_dict({**self.meta.get("config", {}), "network": self.config.to_dict()})
            stats = calibrate_statistics(train_cfg, self.params, shape, FIRST_USE_CALIBRATION, progress=None)
            self._stats[shape] = jax.tree_util.tree_map(jnp.asarray, stats)
        return self._stats[shape]

    def inference_weights(self, shape: Sequence[int]):
        """The weights ``hybrid_nes.inference`` runs for ``shape``: the parameters with the
        shape's BatchNorm statistics folded in (``fold_params``), computed once and cached."""
        if (net := self._route(shape)) is not None:
            return net.inference_weights(shape)
        shape = tuple(sorted(shape))
        if shape not in self._folded:
            self._folded[shape] = fold_params(self.config, self.params, self.statistics(shape))
        return self._folded[shape]

    # -- validation ----------------------------------------------------------------------
    def check_shape(self, shape: Sequence[int], allow_untrained: bool = False) -> tuple[int, ...]:
        """Validates a game shape for this network; returns it as a tuple."""
        shape = check_shape(shape, "game shape")
        if (net := self._route(shape)) is not None:
            return net.check_shape(shape, allow_untrained)
        if len(shape) not in self.own_players and not allow_untrained:
            raise ValueError(
                f"games with {len(shape)} players (shape {shape}): the {self.concept.upper()} network(s) here "
                f"were trained on {'/'.join(map(str, self.players))}-player games; pass allow_untrained=True to "
                "predict anyway"
            )
        if math.prod(shape) > MAX_JOINT_ACTIONS:
            raise ValueError(
                f"game shape {shape} has {math.prod(shape)} joint actions; the network takes at most "
                f"{MAX_JOINT_ACTIONS}"
            )
        if self.concept == "ce" and min(shape) < 2 and num_constraints(shape, "ce") == 0:
            raise ValueError(f"game shape {shape} has no CE constraints (every player has one action)")
        return shape

    # -- prediction ----------------------------------------------------------------------
    def predict_normalised(self, payoffs: np.ndarray, sel: SelectionInputs, allow_untrained: bool = False) -> np.ndarray:
        """Flat NORMALISED duals ``[B, K]`` (float64) of normalised games.

        This is what the pipeline calls.

        Args:
          payoffs: ``[B, N, A1..AN]`` normalised games (``solvers.normalise_batch``).
          sel: ``SelectionInputs`` with a leading B axis, normalised units
            (``hybrid_nes.sampling.selection_inputs`` of ``solvers.resolve_selection``).
          allow_untrained: predict for player counts the network was not trained on.
        """
        payoffs = np.asarray(payoffs)
        if payoffs.ndim < 4:
            raise ValueError(f"payoffs must have shape [B, N, A1..AN], got {payoffs.shape}")
        if (net := self._route(payoffs.shape[2:])) is not None:
            return net.predict_normalised(payoffs, sel, allow_untrained)
        b = payoffs.shape[0]
        shape = self.check_shape(payoffs.shape[2:], allow_untrained)
        if payoffs.shape[1] != len(shape):
            raise ValueError(f"payoffs has {payoffs.shape[1]} players on axis 1 but {len(shape)} action axes")
        expect = {"base_logits": (b, *shape), "eps_hat": (b, len(shape)), "eps_plus": (b, len(shape)), "rho": (b,)}
        for name, want in expect.items():
            got = np.shape(getattr(sel, name))
            if got != want and not (name == "base_logits" and got == (b, math.prod(shape))):
                raise ValueError(f"sel.{name} has shape {got}; expected {want} for payoffs of shape {payoffs.shape}")
        sel = SelectionInputs(
            np.asarray(sel.base_logits, np.float32).reshape(b, *shape),
            np.asarray(sel.eps_hat, np.float32),
            np.asarray(sel.eps_plus, np.float32),
            np.asarray(sel.rho, np.float32),
        )
        weights = self.inference_weights(shape)
        out = []
        for start in range(0, b, MAX_CHUNK):
            stop = min(b, start + MAX_CHUNK)
            size = stop - start
            pad = _bucket(size) - size
            chunk_p = np.asarray(payoffs[start:stop], np.float32)
            chunk_s = SelectionInputs(*(x[start:stop] for x in sel))
            if pad:
                # Padding repeats the first game; inference-mode BatchNorm makes games independent.
                chunk_p = np.concatenate([chunk_p, np.repeat(chunk_p[:1], pad, 0)])
                chunk_s = SelectionInputs(*(np.concatenate([x, np.repeat(x[:1], pad, 0)]) for x in chunk_s))
            duals = self._forward(weights, chunk_p, chunk_s)
            out.append(np.asarray(duals, np.float64)[:size])
        return np.concatenate(out)

    def predict_duals(
        self,
        games: np.ndarray,
        selection: str | Selection | Sequence[Selection] = "me",
        *,
        units: str = "normalised",
        allow_untrained: bool = False,
    ) -> np.ndarray:
        """Predicts flat duals (``solvers.gains`` layout) for a batch of games.

        Args:
          games: ``[B, N, A1..AN]`` payoffs in the games' own units (one game:
            ``game[None]``); they are normalised here (DESIGN §5).
          selection: a preset name, a ``Selection`` for every game, or one per game.
          units: "normalised" (duals of ``solvers.normalise(game)``; what the exact
            solvers take) or "payoff" (duals of the raw game).
          allow_untrained: predict for player counts the network was not trained on.

        Returns:
          ``[B, K]`` float64 non-negative duals.
        """
        if units not in ("normalised", "payoff"):
            raise ValueError(f"units must be 'normalised' or 'payoff', got {units!r}")
        batch = as_game_batch(games, "games")
        if (net := self._route(batch.shape[2:])) is not None:
            return net.predict_duals(batch, selection, units=units, allow_untrained=allow_untrained)
        shape = self.check_shape(batch.shape[2:], allow_untrained)
        norm = normalise_batch(batch)
        sel = self.selection_inputs(norm, selection)
        duals = self.predict_normalised(norm.payoffs, sel, allow_untrained)
        if units == "payoff":
            duals = duals_to_payoff_units(duals, norm.scale, shape, self.concept)
        return duals

    def predict_joint(
        self,
        games: np.ndarray,
        selection: str | Selection | Sequence[Selection] = "me",
        *,
        allow_untrained: bool = False,
    ) -> np.ndarray:
        """The network's equilibrium alone: ``sigma(duals)`` of the predicted duals.

        Approximate and uncertified (8x8 ME-CCE: CCE gap ~0.017, half-L1 distance to the
        exact joint ~0.012, see the model card); ``hybrid_nes.solve_batch`` returns the
        certified ones. Arguments as ``predict_duals``.

        Returns:
          ``[B, A1..AN]`` float64 joints (each sums to 1).
        """
        from solvers import kernels as kn
        from solvers.gains import gain_layout

        batch = as_game_batch(games, "games")
        if (net := self._route(batch.shape[2:])) is not None:
            return net.predict_joint(batch, selection, allow_untrained=allow_untrained)
        shape = self.check_shape(batch.shape[2:], allow_untrained)
        norm = normalise_batch(batch)
        sel = self.selection_inputs(norm, selection)
        duals = self.predict_normalised(norm.payoffs, sel, allow_untrained)
        num_games, num_players = batch.shape[:2]
        layout = gain_layout(shape, self.concept)
        values = kn.gain_values(norm.payoffs.reshape(num_games, num_players, -1), layout.slot_player, layout.dev)
        base = np.ascontiguousarray(np.asarray(sel.base_logits, np.float64).reshape(num_games, -1))
        joint = kn.softmax(kn.logits(layout.rows, values, base, np.ascontiguousarray(duals)))
        return joint.reshape((num_games,) + shape)

    def selection_inputs(self, norm: NormalisedGame, selection) -> SelectionInputs:
        """Resolves ``selection`` against each normalised game of a batch."""
        if (net := self._route(norm.payoffs.shape[2:])) is not None:
            return net.selection_inputs(norm, selection)
        b = norm.payoffs.shape[0]
        if isinstance(selection, (str, Selection)):
            selections = [as_selection(selection)] * b
        else:
            selections = [as_selection(s) for s in selection]
            if len(selections) != b:
                raise ValueError(f"selection lists {len(selections)} selections for {b} games")
        params = []
        for i, s in enumerate(selections):
            if s.objective != "entropy":
                raise ValueError(f"selection {s.name!r} (objective {s.objective!r}) has no dual for the network to predict")
            game = NormalisedGame(norm.payoffs[i], norm.scale[i], norm.offset[i])
            params.append(resolve_selection(s, game))
        untrained = {s.name for s in selections} - set(self.presets)
        if untrained:
            warnings.warn(
                f"selection presets {sorted(untrained)} were not in this network's training mix "
                f"{self.presets}; its duals are only a rough warm start",
                stacklevel=3,
            )
        return selection_inputs(params, norm.payoffs.shape[2:])


def pretrained_path(concept: str = "cce", players: int = 2) -> Path:
    """Path of the shipped weight file for ``concept`` and ``players``-player games
    (``PRETRAINED_PLAYERS``; the file may be absent for a concept)."""
    concept = check_concept(concept)
    if players not in PRETRAINED_PLAYERS:
        raise ValueError(f"players must be one of {PRETRAINED_PLAYERS} (shipped networks), got {players!r}")
    name = f"nes_{concept}.npz" if players == 2 else f"nes_{concept}_{players}p.npz"
    return Path(str(resources.files("hybrid_nes") / "pretrained" / name))


def _load_file(file: Path, concept: str) -> NESModel:
    model = NESModel.from_file(file)
    if model.concept != concept:
        raise ckpt_lib.CheckpointError(f"{str(file)!r} holds a {model.concept.upper()} network, not {concept.upper()}")
    return model


def load_pretrained(concept: str = "cce", path: str | os.PathLike | None = None) -> NESModel:
    """Loads the shipped NES for ``concept`` ("cce" or "ce"), or weights from ``path``.

    The shipped 2-player network (trained on 2x2 .. 16x16), with the shipped network of
    every other player count attached (``NESModel.attach_file``: loaded on the first
    game of that count; 3-player: trained on 3x3x3 and 5x5x5). ME and MRE selections
    with hard constraints; see ``hybrid_nes/pretrained/MODEL_CARD.md``. With ``path``,
    that file's network alone.

    Raises:
      hybrid_nes.checkpoint.CheckpointError: missing or corrupt weight file, or weights
        of the other concept.
    """
    concept = check_concept(concept)
    if path is not None:
        return _load_file(Path(path), concept)
    model = _load_file(pretrained_path(concept), concept)
    for players in PRETRAINED_PLAYERS[1:]:
        file = pretrained_path(concept, players)
        if file.exists():
            model.attach_file(players, file)
    return model
