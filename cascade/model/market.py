"""Market model inputs: exogenous flow schedule, background noise and the parameter vector.

The price model (applied inside the engine's step loop, :mod:`cascade.engine`), per step of
``step_s`` seconds, all prices in USD:

    x_t        = x_{t-1} + sigma * z_t                         background noise, z ~ N(0, 1)
                 (a random walk; with noise_permanent_share, see background_noise)
    log P_pre  = x_t + perm + trans * d                        before this step's orders
    F          = exogenous + dip-buying + forced orders        net market-order flow, USD (+ buy)
    G(y)       = 1% * sign(y) * g(|y| / D_t)                   impact of an outstanding imbalance
                 g(u) = u for u < 1, u ** alpha beyond          (linear sweep, then concave)
    Y          = Y_{t-1} * d                                   imbalance the book has not absorbed
    I          = G(Y + F) - G(Y);  Y += F                      this step's impact, log units
    log P      = log P_pre + I;  perm += phi_t * I;  trans += (1 - phi_t) * I
    d          = 2 ** (-step_s / resilience_half_life_s)       the book refills: trans and Y decay
    D_t        = depth_usd * max(floor, 1 / (1 + a * v / 0.1% + b * max(l - l0, 0)))
                 v: moving average of |log return| per step in % / sqrt(step_s), l: of forced flow per
                 second / depth_usd;
                 l0: the forced flow market makers absorb without pulling quotes
    fill price = P_pre * exp(mean of G(u) - G(Y) for u from Y to Y + F)

Impact is linear for imbalances below ``depth_usd`` (small orders sweep a book of roughly
constant density) and concave beyond (the square-root law of large metaorders when alpha = 0.5).
Because it is a function of the cumulative imbalance, the same block sold at once or over a few
steps moves the price alike, less what the book refilled in between.
Counter-trend traders buy ``rate * (drawdown below a slow moving average - threshold)`` USD per
second, and sell alike above it, up to a cap; rate and cap are shares of the depth
(``dip_buy_depth_share_per_pct``, ``dip_buy_max_depth_share``) scaled by the thinning of this
step (``D_t / depth_usd``): into a book thinned 20x they send a twentieth, so their orders never
move a thin book more than a full one. With ``dip_buy_reference = "fair"`` the reference is the
price less its transient impact, ``exp(x + perm)``, instead of the slow average: they lean against
the dislocation left by uninformed orders, not against news. With ``permanent_depth = "normal"``
the permanent part of a step's impact is ``G`` at ``depth_usd`` (the full book), the rest of the
move transient. ``depth_usd`` itself is ``depth_oi_ratio`` times the open
interest unless the event cites a figure, so the law is scale-free: a market half the size, with
shocks half the size, follows the same path.
Impact splits into a permanent and a transient part by who sent the flow: the scenario's
exogenous flows are news (informed) and keep ``news_permanent_share`` of their impact; forced,
fund, arbitrage and counter-trend orders are uninformed and keep ``permanent_share`` (for a step
whose net flow mixes both, the news flow's share of the net flow, when they agree in sign).
Arbitrage between venues sizes its orders by each venue's current (thinned) depth.
Random draws come from a seeded generator independent of the population, so the price path with
feedback off does not depend on the positions at all.
"""

from __future__ import annotations

import numpy as np

SECONDS_PER_YEAR = 365.0 * 86400.0

# indices into the float parameter vector passed to the step loop
(P_STEP, P_DEPTH, P_ALPHA, P_PHI, P_DECAY, P_FLOOR, P_VOLSENS, P_LIQSENS, P_MEMDECAY,
 P_DIPRATE, P_DIPTHR, P_DIPCAP, P_REFDECAY, P_FEE, P_FEEDBACK, P_LIQ_EQ, P_EMA, P_FINT_S,
 P_T0, P_OFFLOAD, P_FUNDCAP, P_NEWSPHI, P_LIQTHR, P_DIPFAIR, P_PERMNORMAL) = range(25)
N_PARAMS = 25
# P_OFFLOAD: share of the venue's (thinned) depth the fund offloads per minute; P_FUNDCAP: the
# fund's (vault's) net inventory notional may reach this multiple of its balance; P_NEWSPHI: the
# permanent share of the exogenous (news) flows' impact; P_LIQTHR: forced flow per second, as a share
# of depth, that the book absorbs without thinning; P_DIPFAIR: 1 when the counter-trend traders'
# reference is the fair price (the price less its transient impact), 0 for the slow average;
# P_PERMNORMAL: 1 when the permanent part of a step's impact is measured against the book at
# depth_usd (what thinning adds is transient), 0 against the current book
# indices into the integer parameter vector
I_MARKW, I_LAT, I_MAXIT, I_MARK, I_PARTIAL, I_ADL, I_BWIN, I_LIQORD = range(8)
N_IPARAMS = 8
# mark-price rules (I_MARK): mean of last over the window; Binance median(P1, P2, last);
# Hyperliquid median(oracle + basis EMA, last, other venues' last)
MARK_LAST_AVERAGE, MARK_BINANCE, MARK_HYPERLIQUID = 0, 1, 2
# partial-liquidation rules (I_PARTIAL): none (whole position, Binance as documented);
# Bybit-style tier step-down; Hyperliquid 20 % / 30 s / backstop
PARTIAL_NONE, PARTIAL_STEP_DOWN, PARTIAL_HYPERLIQUID = 0, 1, 2
# auto-deleveraging (I_ADL): none (a deficit the fund cannot pay is bad debt); Binance ranking at
# the bankruptcy price; Hyperliquid ranking at the previous mark
ADL_NONE, ADL_BINANCE, ADL_HYPERLIQUID = 0, 1, 2
# how a liquidation is executed (I_LIQORD, mechanics.md section 5): a market order without limit
# (a backstop vault, if any, books the position away); one IOC order limited at the bankruptcy
# price, the fund taking over the rest (Binance); market orders, then the backstop vault holding
# the position within its capacity, then ADL (Hyperliquid); the fund taking the whole position
# over at the bankruptcy price, within its cap, and offloading it, ADL beyond (Bybit, OKX:
# mechanics.md section 2)
LIQORD_MARKET, LIQORD_IOC, LIQORD_BACKSTOP, LIQORD_TAKEOVER = 0, 1, 2, 3
LIQUIDATION_ORDERS = {"market": LIQORD_MARKET, "ioc_bankruptcy": LIQORD_IOC,
                      "backstop": LIQORD_BACKSTOP, "takeover": LIQORD_TAKEOVER}


def step_times(sc):
    """UTC DatetimeIndex of the step starts, shape (n_steps,)."""
    import pandas as pd

    return pd.date_range(sc.scenario.start, periods=sc.n_steps,
                         freq=pd.Timedelta(seconds=sc.scenario.step_s), name="time")


def exogenous_flow(sc) -> np.ndarray:
    """Signed exogenous market-order flow per step, float64 (n_steps,), USD (+ buy, - sell)."""
    s = sc.scenario
    flow = np.zeros(sc.n_steps)
    t0 = s.start.timestamp()
    for f in sc.flows:
        a = (f.start.timestamp() - t0) / s.step_s
        b = a + f.duration_min * 60.0 / s.step_s
        i0, i1 = int(np.floor(a)), min(int(np.ceil(b)), sc.n_steps)
        per_step = f.usd_per_min * s.step_s / 60.0 * (-1.0 if f.side == "sell" else 1.0)
        for i in range(i0, i1):  # partial first/last steps get their share of the flow
            cover = min(i + 1, b) - max(i, a)
            flow[i] += per_step * cover
    return flow


def background_noise(sc, seed: int) -> np.ndarray:
    """Log-price increments of the background noise, float64 (n_steps,).

    Shocks ``e_t = sigma * z_t``. With ``noise_permanent_share`` phi absent (or 1) the noise is a
    random walk, ``x_t = x_{t-1} + e_t``. Otherwise ``x_t = perm_t + trans_t`` with
    ``perm_t = perm_{t-1} + phi * e_t`` and ``trans_t = d * trans_{t-1} + (1 - phi) * e_t``,
    ``d = 2 ** (-step_s / resilience_half_life_s)``: uninformed flow whose impact decays as the
    book refills, like every uninformed order in the impact law."""
    from scipy.signal import lfilter

    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0x4D4B54])))
    m = sc.market
    sigma = m.volatility_annual_pct / 100.0 * np.sqrt(sc.scenario.step_s / SECONDS_PER_YEAR)
    e = rng.standard_normal(sc.n_steps) * sigma
    phi = m.noise_permanent_share
    if phi is None or phi == 1.0:
        return e
    d = 2.0 ** (-sc.scenario.step_s / m.resilience_half_life_s)
    trans = lfilter([1.0 - phi], [1.0, -d], e)
    out = phi * e
    out[0] += trans[0]
    out[1:] += np.diff(trans)
    return out


def news_permanent_share(m) -> float:
    """Permanent share of the exogenous flows' impact: ``news_permanent_share``, or
    ``permanent_share`` where the law gives none."""
    v = m.news_permanent_share
    return float(m.permanent_share if v is None else v)


def dip_buying_usd(m) -> tuple[float, float]:
    """(rate USD/s per %, cap USD/s) of dip buying for a validated ``[market]`` namespace: the
    scale-free shares of ``depth_usd``, or the legacy absolute keys where a scenario gives them."""
    rate = m.dip_buy_usd_per_s_per_pct
    if rate is None:
        rate = m.dip_buy_depth_share_per_pct * m.depth_usd
    cap = m.dip_buy_max_usd_per_s
    if cap is None:
        cap = m.dip_buy_max_depth_share * m.depth_usd
    return float(rate), float(cap)


def parameters(sc, fee_rate: float, feedback: bool, liquidate_on_equal: bool = True):
    """(float64 (N_PARAMS,), int64 (N_IPARAMS,)) parameter vectors of a single-venue run: the
    mark is the mean of last price over ``mark_window_s``, no partial liquidation, no ADL, the
    liquidation order of ``[venue] liquidation_order``."""
    m, s, e = sc.market, sc.scenario, sc.engine
    dt = s.step_s
    prm = np.zeros(N_PARAMS)
    prm[P_STEP] = dt
    prm[P_DEPTH] = m.depth_usd
    prm[P_ALPHA] = m.impact_exponent
    prm[P_PHI] = m.permanent_share
    prm[P_NEWSPHI] = news_permanent_share(m)
    prm[P_DECAY] = 2.0 ** (-dt / m.resilience_half_life_s)
    prm[P_FLOOR] = m.depth_floor
    prm[P_VOLSENS] = m.depth_vol_sensitivity
    prm[P_LIQSENS] = m.depth_liq_sensitivity
    prm[P_LIQTHR] = m.depth_liq_threshold
    prm[P_MEMDECAY] = 2.0 ** (-dt / m.depth_memory_s)
    rate, cap = dip_buying_usd(m)
    prm[P_DIPRATE] = rate * dt
    prm[P_DIPTHR] = m.dip_buy_threshold_pct
    prm[P_DIPCAP] = cap * dt
    prm[P_REFDECAY] = 2.0 ** (-dt / m.reference_half_life_s)
    prm[P_DIPFAIR] = 1.0 if m.dip_buy_reference == "fair" else 0.0
    prm[P_PERMNORMAL] = 1.0 if m.permanent_depth == "normal" else 0.0
    prm[P_FEE] = fee_rate
    prm[P_FEEDBACK] = 1.0 if feedback else 0.0
    prm[P_LIQ_EQ] = 1.0 if liquidate_on_equal else 0.0
    prm[P_EMA] = 1.0  # venue rules (cascade.model.venues) set the rest; these are the single-venue ones
    prm[P_FINT_S] = 0.0
    prm[P_T0] = s.start.timestamp()
    prm[P_OFFLOAD] = m.fund_offload_depth_share_per_min
    prm[P_FUNDCAP] = m.fund_cap_multiple
    iprm = np.zeros(N_IPARAMS, np.int64)
    iprm[I_MARKW] = max(1, int(round(m.mark_window_s / dt)))
    iprm[I_LAT] = int(round(e.latency_s / dt))
    iprm[I_MAXIT] = e.max_iterations
    iprm[I_MARK] = MARK_LAST_AVERAGE
    iprm[I_PARTIAL] = PARTIAL_NONE
    iprm[I_ADL] = ADL_NONE
    iprm[I_BWIN] = 1
    iprm[I_LIQORD] = LIQUIDATION_ORDERS[single_venue_liquidation_order(sc)]
    return prm, iprm


def single_venue_liquidation_order(sc) -> str:
    """``[venue] liquidation_order`` resolved: 'rules' -> binance: ioc_bankruptcy; hyperliquid:
    market (one venue has no backstop vault: its partial rule is 'none')."""
    lo = sc.venue.liquidation_order
    if lo == "rules":
        return "ioc_bankruptcy" if sc.venue.name == "binance" else "market"
    return lo
