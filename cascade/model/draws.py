"""Counter-based random draws for the population (issue 12): the same numbers on any thread count.

Draw ``slot`` of candidate ``i`` is a pure function of ``(key, i, slot)``: the SplitMix64 output
function (Steele, Lea & Flood 2014, "Fast splittable pseudorandom number generators"; the
generator of ``java.util.SplittableRandom``) applied to the counter
``key + (i * SLOTS + slot + 1) * GOLDEN``, which is exactly SplitMix64's stream seeded with ``key``,
read at position ``i * SLOTS + slot``. No state is carried from one candidate to the next, so a
``prange`` over candidates gives the same numbers whatever the block each thread takes. ``key``
comes from ``np.random.SeedSequence([seed, 0xCA5CADE, stream])`` (:func:`stream_key`), so nearby
seeds give unrelated streams.

Distributions, each from uniforms ``u`` in [0, 1) (53 random bits):

- Bernoulli(p): ``u < p``;
- Lomax (NumPy's ``pareto``): ``expm1(-log1p(-u) / a)``;
- exponential(1): ``-log1p(-u)``;
- standard normal: Box-Muller, ``sqrt(-2 log1p(-u1)) cos(2 pi u2)``;
- a choice with probabilities ``p``: the first index whose cumulative ``p`` (normalised to end at 1)
  exceeds ``u``, as NumPy's ``Generator.choice``.

The slow, obvious reference is ``tests/test_draws.py`` (Python integers and ``math``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

from cascade._numba import jit, pjit

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_TWO_M53 = 1.0 / 9007199254740992.0  # 2**-53

# slots of one candidate's draws (a normal takes two)
SLOT_SIDE, SLOT_SIZE, SLOT_LEV, SLOT_AGE, SLOT_NOISE, SLOT_MODE, SLOT_SPARE, SLOT_STOP, \
    SLOT_DIST, SLOT_SURVIVE = 0, 1, 2, 3, 4, 6, 7, 8, 9, 10
SLOTS = 11


def stream_key(seed: int, stream: int = 0) -> np.uint64:
    """The 64-bit key of ``seed``'s stream number ``stream`` (SeedSequence-mixed)."""
    state = np.random.SeedSequence([int(seed), 0xCA5CADE, int(stream)]).generate_state(
        1, np.uint64)
    return np.uint64(state[0])


@jit(inline="always")
def uniform_nb(key, i, slot):
    """Uniform in [0, 1): draw ``slot`` of candidate ``i`` (int64s) of stream ``key`` (uint64)."""
    x = key + np.uint64(i * SLOTS + slot + 1) * GOLDEN
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    x = x ^ (x >> _S31)
    return float(x >> _S11) * _TWO_M53


class CandidateLaw(NamedTuple):
    """What the draws of one candidate follow (the scenario's [population] values, in the units
    the kernel uses).

    long_share : probability of a long
    xm : minimum notional, USD (the Lomax shape's scale)
    tail : Lomax tail index
    lev_cdf, lev_values : float64 (k,) cumulative leverage weights ending at 1, and the leverages
    lookback_s, mean_age_s : the entry age's truncation and mean, seconds
    noise_sigma : standard deviation of the log entry noise (fraction)
    cross_share : probability of cross margin
    spare_mean : mean spare cross margin (fraction of notional; 0: none)
    stop_share : probability of a stop-loss
    dist_lo, dist_hi : stop distance range (fraction of entry)
    """

    long_share: float
    xm: float
    tail: float
    lev_cdf: np.ndarray
    lev_values: np.ndarray
    lookback_s: float
    mean_age_s: float
    noise_sigma: float
    cross_share: float
    spare_mean: float
    stop_share: float
    dist_lo: float
    dist_hi: float


class Candidates(NamedTuple):
    """The candidates' drawn columns, each (n,): side int8 (+1/-1), notional float64 (USD, the
    size's shape before the open-interest rescaling; not named ``shape``, which numba reads as
    the tuple's own attribute), leverage float64, age float64 (seconds before the start), noise
    float64 (multiplier of the entry price), cross bool, spare float64, has_stop bool, stop_dist
    float64 (fraction), u_survive float64 (uniform)."""

    side: np.ndarray
    notional: np.ndarray
    leverage: np.ndarray
    age: np.ndarray
    noise: np.ndarray
    cross: np.ndarray
    spare: np.ndarray
    has_stop: np.ndarray
    stop_dist: np.ndarray
    u_survive: np.ndarray


def empty_candidates(n: int) -> Candidates:
    """Uninitialised :class:`Candidates` of n rows, for :func:`draw_candidates_nb` to fill."""
    return Candidates(np.empty(n, np.int8), np.empty(n), np.empty(n), np.empty(n), np.empty(n),
                      np.empty(n, np.bool_), np.empty(n), np.empty(n, np.bool_), np.empty(n),
                      np.empty(n))


@pjit
def draw_candidates_nb(key, law, out):
    """Fill ``out`` (:class:`Candidates`, n rows) with candidates 0..n-1 of stream ``key``
    following ``law`` (:class:`CandidateLaw`); candidate i's values depend on (key, i) only."""
    # each array is bound to a local name by attribute first: numba 0.68 drops a prange loop's
    # writes through a namedtuple (``out.side[i] = ...``, or names bound by unpacking it, even
    # ``a, b = out.a, out.b``), while writes to an array bound alone, ``side = out.side``, land
    # (numba issues 5872, 7135 and 10338, open; tests/test_draws.py checks the kernel against
    # its reference)
    side = out.side
    notional = out.notional
    leverage = out.leverage
    age = out.age
    noise = out.noise
    cross = out.cross
    spare = out.spare
    has_stop = out.has_stop
    stop_dist = out.stop_dist
    u_survive = out.u_survive
    lev_cdf = law.lev_cdf
    lev_values = law.lev_values
    long_share, xm, tail, noise_sigma = law.long_share, law.xm, law.tail, law.noise_sigma
    cross_share, spare_mean, stop_share = law.cross_share, law.spare_mean, law.stop_share
    dist_lo, dist_hi, mean_age = law.dist_lo, law.dist_hi, law.mean_age_s
    n = side.size
    trunc = -math.expm1(-law.lookback_s / mean_age)
    k = lev_cdf.size
    for i in numba.prange(n):
        side[i] = 1 if uniform_nb(key, i, SLOT_SIDE) < long_share else -1
        notional[i] = xm * (1.0 + math.expm1(-math.log1p(-uniform_nb(key, i, SLOT_SIZE)) / tail))
        u = uniform_nb(key, i, SLOT_LEV)
        j = 0
        while j < k - 1 and lev_cdf[j] <= u:
            j += 1
        leverage[i] = lev_values[j]
        # truncated exponential age by inverse CDF
        age[i] = -mean_age * math.log1p(-uniform_nb(key, i, SLOT_AGE) * trunc)
        z = math.sqrt(-2.0 * math.log1p(-uniform_nb(key, i, SLOT_NOISE))) * math.cos(
            2.0 * math.pi * uniform_nb(key, i, SLOT_NOISE + 1))
        noise[i] = math.exp(z * noise_sigma)
        cross[i] = uniform_nb(key, i, SLOT_MODE) < cross_share
        spare[i] = -math.log1p(-uniform_nb(key, i, SLOT_SPARE)) * spare_mean \
            if spare_mean > 0.0 else 0.0
        has_stop[i] = uniform_nb(key, i, SLOT_STOP) < stop_share
        stop_dist[i] = dist_lo + (dist_hi - dist_lo) * uniform_nb(key, i, SLOT_DIST)
        u_survive[i] = uniform_nb(key, i, SLOT_SURVIVE)


def draw_candidates(seed: int, n: int, law: CandidateLaw) -> Candidates:
    """Candidates 0..n-1 of ``seed`` (:func:`draw_candidates_nb`), in parallel."""
    out = empty_candidates(n)
    if n:
        draw_candidates_nb(stream_key(seed), law, out)
    return out
