"""Selection presets, validation and resolution into normalised units (solvers.selection)."""

import math

import numpy as np
import pytest

from solvers.game import normalise
from solvers.selection import PRESETS, Selection, as_selection, resolve_selection


def test_every_preset_name_builds():
    target = np.full((2, 2), 0.25)
    for name in PRESETS:
        params = {"mre": {"target": target}, "mwme": {"welfare": np.eye(2)}}.get(name, {})
        assert as_selection(name, **params).name == name


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: as_selection("maxent"), "unknown selection preset"),
        (lambda: Selection.mre(target=np.array([[0.5, 0.5], [0.0, 0.0]])), "full support"),
        (lambda: Selection.mre(target=np.array([[0.5, 0.5], [0.5, 0.5]])), "sum to 1"),
        (lambda: Selection.mre(target=np.array([[np.nan, 0.5], [0.25, 0.25]])), "NaN"),
        (lambda: as_selection("mre"), "target"),
        (lambda: as_selection("mwme"), "welfare"),
        (lambda: Selection.mw(mu=-1.0), "mu"),
        (lambda: Selection(rho=-2.0), "rho"),
        (lambda: Selection(rho=1.0, eps_hat=0.5, eps_plus=0.1), "eps_plus"),
        (lambda: Selection(eps_hat=np.ones((2, 2))), "eps_hat"),
        (lambda: Selection(objective="l1"), "objective"),
    ],
)
def test_bad_selection_raises_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_types_raise_type_error():
    with pytest.raises(TypeError):
        as_selection(3)
    with pytest.raises(TypeError):
        Selection(mu="a lot")


def test_resolve_maps_payoff_units_to_normalised_units():
    rng = np.random.default_rng(0)
    game = rng.normal(size=(2, 3, 3)) * np.array([2.0, 0.5])[:, None, None]
    norm = normalise(game)
    params = resolve_selection(Selection.me(eps_hat=np.array([0.1, 0.2])), norm)
    np.testing.assert_allclose(params.eps_hat, np.array([0.1, 0.2]) * norm.scale)
    assert np.all(np.isinf(params.eps_plus)) and math.isinf(params.rho)
    np.testing.assert_allclose(params.base_logits, -np.log(9.0))


def test_resolve_mre_and_welfare():
    norm = normalise(np.random.default_rng(1).normal(size=(2, 2, 3)))
    target = np.arange(1.0, 7.0).reshape(2, 3) / 21.0
    mre = resolve_selection(Selection.mre(target), norm)
    np.testing.assert_allclose(mre.base_logits, np.log(target.ravel()))
    mw = resolve_selection(Selection.mw(mu=2.0), norm)
    welfare = norm.payoffs.sum(axis=0).ravel()
    np.testing.assert_allclose(mw.base_logits, -np.log(6.0) + 2.0 * welfare)
    with pytest.raises(ValueError, match="shape"):
        resolve_selection(Selection.mre(np.full((3, 2), 1 / 6)), norm)


def test_max_strength_pins_eps_hat_below_zero():
    norm = normalise(np.random.default_rng(2).normal(size=(2, 4, 4)))
    params = resolve_selection(Selection.ms(), norm)
    assert np.all(params.eps_hat == -params.eps_plus) and np.all(params.eps_plus > 0)
    assert math.isfinite(params.rho)


def test_parameter_free_presets_are_built_once_and_immutable():
    me = as_selection("me")
    assert as_selection("ME") is me  # per-selection caches hit on every call naming it
    with pytest.raises(AttributeError):
        me.mu = 1.0  # type: ignore[misc]
    target = np.full((2, 2), 0.25)
    assert as_selection("mre", target=target) is not as_selection("mre", target=target)


# ---------------------------------------------------------------------------------------
# Presets take only their own parameters (no silent conversion into another criterion).


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("me", {"target": np.full((2, 2), 0.25)}, "use selection='mre'"),
        ("me", {"mu": 2.0}, "'mw'"),
        ("me", {"welfare": np.eye(2)}, "'mwme'"),
        ("me", {"strength": True, "rho": 1.0}, "'ms'"),
        ("me", {"objective": "gini"}, "'mg'"),
        ("me", {"name": "mw"}, "name"),
        ("mre", {"target": np.full((2, 2), 0.25), "mu": 1.0}, "'mw'"),
        ("mw", {"welfare": np.eye(2)}, "'mwme'"),
        ("mw", {"target": np.full((2, 2), 0.25)}, "'mre'"),
        ("mw", {"mu": 0.0}, "mu > 0"),
        ("mwme", {"welfare": np.eye(2), "mu": 0.0}, "mu > 0"),
        ("mwme", {"welfare": np.eye(2), "target": np.full((2, 2), 0.25)}, "'mre'"),
        ("ms", {"eps_hat": 0.1}, "eps_hat would be ignored"),
        ("ms", {"mu": 1.0}, "'mw'"),
        ("ms", {"rho": math.inf}, "finite rho"),
        ("mg", {"target": np.full((2, 2), 0.25)}, "'mre'"),
        ("mg", {"rho": 1.0, "eps_plus": 1.0}, "Max Gini"),
    ],
)
def test_presets_refuse_parameters_they_would_convert_or_ignore(name, params, message):
    with pytest.raises(ValueError, match=message):
        as_selection(name, **params)
    with pytest.raises(ValueError, match=message):
        getattr(Selection, name)(**params)


def test_me_with_a_target_names_mre():
    with pytest.raises(ValueError, match=r"'me' preset has a uniform target.*'mre'"):
        as_selection("me", target=np.full((2, 2), 0.25))


@pytest.mark.parametrize("name", PRESETS)
def test_unknown_preset_keyword_is_a_type_error_naming_it(name):
    params = {"mre": {"target": np.full((2, 2), 0.25)}, "mwme": {"welfare": np.eye(2)}}.get(name, {})
    with pytest.raises(TypeError, match=f"'model'.*'{name}' preset"):
        as_selection(name, model="cce", **params)


def test_eps_plus_with_hard_constraints_is_refused():
    # eps_plus only bounds soft constraints; with rho=inf it was silently unused.
    with pytest.raises(ValueError, match="eps_plus.*rho=inf"):
        as_selection("me", eps_plus=1.0)
    with pytest.raises(ValueError, match="eps_plus.*rho=inf"):
        Selection(eps_plus=1.0)
    assert as_selection("me", eps_plus=1.0, rho=2.0).eps_plus == 1.0


def test_presets_keep_the_parameters_they_take():
    target = np.full((2, 2), 0.25)
    assert as_selection("me", eps_hat=0.1, eps_plus=1.0, rho=3.0).rho == 3.0
    assert as_selection("mre", target=target, rho=2.0, eps_plus=1.0).target is not None
    assert as_selection("mw", mu=2.0, eps_hat=0.1).mu == 2.0
    assert as_selection("mwme", welfare=np.eye(2), mu=1.0, rho=2.0).welfare is not None
    assert as_selection("ms", rho=2.0, eps_plus=1.0).strength
    assert as_selection("mg", eps_hat=0.1).objective == "gini"


def test_keywords_with_a_selection_object_are_named():
    with pytest.raises(TypeError, match="'rho'"):
        as_selection(Selection.me(), rho=1.0)
