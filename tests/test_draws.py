"""The population's counter-based draws (cascade.model.draws) against a slow, obvious reference
in Python integers and ``math``; the same numbers on 1 and 2 threads and in any block; the whole
population identical on 1 and 2 threads; the distributions' moments."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

from cascade.model import draws as D

MASK = (1 << 64) - 1


def ref_uniform(key: int, i: int, slot: int) -> float:
    """SplitMix64 (Steele, Lea & Flood 2014) at position i * SLOTS + slot of stream ``key``."""
    x = (key + (i * D.SLOTS + slot + 1) * 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    x ^= x >> 31
    return (x >> 11) / 2.0 ** 53


def ref_candidate(key: int, i: int, law: D.CandidateLaw) -> tuple:
    u = lambda slot: ref_uniform(key, i, slot)  # noqa: E731
    side = 1 if u(D.SLOT_SIDE) < law.long_share else -1
    notional = law.xm * (1.0 + math.expm1(-math.log1p(-u(D.SLOT_SIZE)) / law.tail))
    lev = law.lev_values[min(int(np.searchsorted(law.lev_cdf, u(D.SLOT_LEV), side="right")),
                             law.lev_cdf.size - 1)]
    trunc = -math.expm1(-law.lookback_s / law.mean_age_s)
    age = -law.mean_age_s * math.log1p(-u(D.SLOT_AGE) * trunc)
    z = math.sqrt(-2.0 * math.log1p(-u(D.SLOT_NOISE))) * math.cos(2.0 * math.pi
                                                                  * u(D.SLOT_NOISE + 1))
    noise = math.exp(z * law.noise_sigma)
    cross = u(D.SLOT_MODE) < law.cross_share
    spare = -math.log1p(-u(D.SLOT_SPARE)) * law.spare_mean if law.spare_mean > 0 else 0.0
    has_stop = u(D.SLOT_STOP) < law.stop_share
    dist = law.dist_lo + (law.dist_hi - law.dist_lo) * u(D.SLOT_DIST)
    return (side, notional, lev, age, noise, cross, spare, has_stop, dist, u(D.SLOT_SURVIVE))


def _law(**kw) -> D.CandidateLaw:
    w = np.array([0.36, 0.22, 0.2, 0.1, 0.09, 0.02, 0.008, 0.002])
    base = dict(long_share=0.62, xm=500.0, tail=1.3, lev_cdf=np.cumsum(w) / w.sum(),
                lev_values=np.array([2.0, 3, 4, 7, 10, 20, 50, 100]), lookback_s=72 * 3600.0,
                mean_age_s=24 * 3600.0, noise_sigma=0.003, cross_share=0.5, spare_mean=2.0,
                stop_share=0.2, dist_lo=0.01, dist_hi=0.06)
    base.update(kw)
    return D.CandidateLaw(**base)


LAWS = {
    "typical": _law(),
    "edges": _law(long_share=0.0, cross_share=1.0, spare_mean=0.0, stop_share=0.0,
                  dist_lo=0.02, dist_hi=0.02, lev_cdf=np.array([1.0]),
                  lev_values=np.array([5.0])),
    "all long": _law(long_share=1.0, stop_share=1.0, tail=0.5, noise_sigma=0.0),
}


@pytest.mark.parametrize("name", sorted(LAWS))
@pytest.mark.parametrize("seed", [0, 7, 2**40 + 3])
def test_kernel_equals_the_reference(name, seed):
    law = LAWS[name]
    n = 300
    got = D.draw_candidates(seed, n, law)
    key = int(D.stream_key(seed))
    for i in list(range(40)) + [n - 1]:
        want = ref_candidate(key, i, law)
        for field, g, w in zip(D.Candidates._fields, got, want):
            assert g[i] == pytest.approx(w, rel=1e-14, abs=0.0), (name, field, i)
    # uniforms cover [0, 1) with 53 bits: never 1, and distinct
    u = got.u_survive
    assert u.min() >= 0.0 and u.max() < 1.0 and np.unique(u).size == n


def test_same_numbers_on_one_and_two_threads_and_in_any_prefix():
    law = LAWS["typical"]
    before = numba.get_num_threads()
    try:
        runs = []
        for threads in (1, 2):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            runs.append(D.draw_candidates(11, 10_001, law))
    finally:
        numba.set_num_threads(before)
    short = D.draw_candidates(11, 977, law)  # candidate i depends on (seed, i) only
    for a, b, c in zip(*runs, short):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a[:977], c)
    other = D.draw_candidates(12, 977, law)
    assert not np.array_equal(short.u_survive, other.u_survive)
    assert D.draw_candidates(11, 0, law).side.size == 0


def test_distributions_have_their_moments():
    law = _law(stop_share=0.3, tail=3.0)
    n = 400_000
    c = D.draw_candidates(3, n, law)
    se = lambda p: 5 * math.sqrt(p * (1 - p) / n)  # noqa: E731
    assert abs((c.side == 1).mean() - 0.62) < se(0.62)
    assert abs(c.cross.mean() - 0.5) < se(0.5) and abs(c.has_stop.mean() - 0.3) < se(0.3)
    weights = np.diff(np.concatenate([[0.0], law.lev_cdf]))
    for v, w in zip(law.lev_values, weights):
        assert abs((c.leverage == v).mean() - w) < se(w) + 1e-12
    z = np.log(c.noise) / law.noise_sigma  # standard normal
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1.0) < 0.01
    assert abs(np.mean(z ** 4) - 3.0) < 0.05
    # Lomax(3): mean 1/(a-1) = 0.5 above xm
    assert abs((c.notional / law.xm - 1.0).mean() - 0.5) < 0.02
    assert abs((c.spare / law.spare_mean).mean() - 1.0) < 0.01  # exponential(1)
    # truncated exponential: inside [0, lookback], mean below the untruncated mean
    assert c.age.min() >= 0.0 and c.age.max() <= law.lookback_s
    lam = 1.0 / law.mean_age_s
    t = law.lookback_s
    mean = 1 / lam - t * math.exp(-lam * t) / (1 - math.exp(-lam * t))
    assert abs(c.age.mean() / mean - 1.0) < 0.01
    assert c.stop_dist.min() >= law.dist_lo and c.stop_dist.max() <= law.dist_hi


def test_population_identical_on_one_and_two_threads(small):
    from cascade.model.population import build_population

    sc = small.with_overrides(**{"population.stop_loss_share": 0.3})
    before = numba.get_num_threads()
    try:
        pops = []
        for threads in (1, 2):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            pops.append(build_population(sc, 20_000, 5))
    finally:
        numba.set_num_threads(before)
    a, b = pops
    for k in ("side", "qty", "entry", "wallet", "lp", "bracket", "cross", "leverage",
              "stop_idx", "stop_px"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
    assert (a.n_long, a.n_ladder, a.dropped_prestart) == (b.n_long, b.n_ladder, b.dropped_prestart)
