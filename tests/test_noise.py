"""The background noise: a random walk by default, permanent + transient with
``noise_permanent_share`` (against a slow per-step loop)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from cascade.model.market import background_noise
from tests.conftest import START, make_scenario


def _naive_noise(sc, seed):
    """Per-step loop of the documented process: perm += phi e; trans = d trans + (1 - phi) e."""
    walk = background_noise(make_scenario(**{
        "market.volatility_annual_pct": sc.market.volatility_annual_pct,
        "scenario.step_s": sc.scenario.step_s, "scenario.end": sc.raw["scenario"]["end"]}), seed)
    phi = sc.market.noise_permanent_share
    d = 2.0 ** (-sc.scenario.step_s / sc.market.resilience_half_life_s)
    perm = trans = x_prev = 0.0
    out = []
    for e in walk:  # the random walk's increments are the shocks e_t
        perm += phi * float(e)
        trans = d * trans + (1.0 - phi) * float(e)
        out.append(perm + trans - x_prev)
        x_prev = perm + trans
    return np.array(out)


def test_default_is_a_random_walk_of_the_stated_volatility():
    sc = make_scenario()
    assert sc.market.noise_permanent_share is None
    e = background_noise(sc, 7)
    sigma = sc.market.volatility_annual_pct / 100 * np.sqrt(sc.scenario.step_s / (365 * 86400))
    assert e.shape == (sc.n_steps,)
    assert np.std(e) == pytest.approx(sigma, rel=0.05)
    one = background_noise(make_scenario(**{"market.noise_permanent_share": 1.0}), 7)
    assert np.array_equal(e, one)


@pytest.mark.parametrize("phi", [0.0, 0.25, 0.9])
@pytest.mark.parametrize("half_life", [1.0, 120.0])
def test_permanent_and_transient_against_the_loop(phi, half_life):
    sc = make_scenario(**{"market.noise_permanent_share": phi,
                          "market.resilience_half_life_s": half_life})
    got = background_noise(sc, 11)
    want = _naive_noise(sc, 11)
    np.testing.assert_allclose(np.cumsum(got), np.cumsum(want), rtol=0, atol=1e-13)
    # the same shocks: over one step the noise moves as much as the random walk's first shock
    walk = background_noise(make_scenario(), 11)
    assert got[0] == pytest.approx(walk[0], rel=1e-12)


def test_transient_noise_wanders_less_over_hours_and_is_deterministic():
    long = {"scenario.end": START + dt.timedelta(hours=24), "scenario.step_s": 1.0}
    walk = make_scenario(**long)
    mixed = make_scenario(**long, **{"market.noise_permanent_share": 0.2,
                                     "market.resilience_half_life_s": 200.0})
    spread_walk, spread_mixed, fast_walk, fast_mixed = [], [], [], []
    for seed in range(12):
        a, b = background_noise(walk, seed), background_noise(mixed, seed)
        spread_walk.append(abs(a.sum()))
        spread_mixed.append(abs(b.sum()))
        fast_walk.append(np.std(a))
        fast_mixed.append(np.std(b))
    assert np.median(spread_mixed) < 0.4 * np.median(spread_walk)   # about 0.2x in theory
    assert np.median(fast_mixed) > 0.95 * np.median(fast_walk)      # one-second volatility kept
    assert np.array_equal(background_noise(mixed, 3), background_noise(mixed, 3))
