"""Stability when nothing happens: a scenario with every exogenous push removed must stay calm.

Issue 15: with no ``[[flows]]`` and no ``[[wicks]]`` the only driver is the background noise. The
market law is calm when, on every seed,

* liquidations stay at most ``max_liquidated_share`` (default 1%) of the open interest at the
  start, and
* the drawdown stays at most ``max_drawdown_ratio`` (default 1.25) times the same seed's drawdown
  with feedback off (the noise alone, as ``amplification`` measures it).

A market that cascades on its own (depth too thin against the liquidation ladder, a wall of
triggers under the start price) fails the first or the second.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

from cascade.errors import CascadeError


def without_flows(sc):
    """The scenario with no exogenous flow and no wicks (everything else, the law included,
    unchanged)."""
    from cascade.model.scenario import parse_scenario

    raw = copy.deepcopy(sc.raw)
    raw["flows"] = []
    raw.pop("wicks", None)
    out = parse_scenario(raw, source=str(sc.path or sc.name),
                         base_dir=sc.path.parent if sc.path else None, path=sc.path)
    return dataclasses.replace(out, extends=sc.extends, law_overrides=sc.law_overrides)


@dataclasses.dataclass
class CalmSeed:
    seed: int
    drawdown_pct: float            # with feedback
    drawdown_no_feedback_pct: float  # same seed, forced orders do not move the price
    liquidated_usd: float
    open_interest_usd: float       # at the start
    liquidated_no_feedback_usd: float = 0.0  # the noise alone, same seed

    @property
    def liquidated_share(self) -> float:
        return self.liquidated_usd / self.open_interest_usd if self.open_interest_usd else 0.0

    @property
    def drawdown_ratio(self) -> float:
        d0 = self.drawdown_no_feedback_pct
        return self.drawdown_pct / d0 if d0 > 0 else (1.0 if self.drawdown_pct <= 0 else
                                                        float("inf"))


@dataclasses.dataclass
class CalmReport:
    scenario: str
    positions: int
    seeds: list
    max_liquidated_share: float
    max_drawdown_ratio: float

    def ok(self, s: CalmSeed) -> bool:
        return (s.liquidated_share <= self.max_liquidated_share
                and s.drawdown_ratio <= self.max_drawdown_ratio)

    @property
    def n_pass(self) -> int:
        return sum(self.ok(s) for s in self.seeds)

    @property
    def passed(self) -> bool:
        return self.n_pass == len(self.seeds)

    def table(self) -> str:
        lines = [f"{self.scenario}: no flows, {self.positions:,} positions, {len(self.seeds)} "
                 f"seeds; calm when liquidated <= {self.max_liquidated_share:.2%} of OI and "
                 f"drawdown <= {self.max_drawdown_ratio:g}x the no-feedback drawdown",
                 "",
                 "| seed | drawdown | drawdown, no feedback | ratio | liquidated | share of OI | "
                 "share, no feedback | calm |",
                 "|---:|---:|---:|---:|---:|---:|---:|---|"]
        for s in self.seeds:
            lines.append(f"| {s.seed} | {s.drawdown_pct:.2f}% | {s.drawdown_no_feedback_pct:.2f}% "
                         f"| {s.drawdown_ratio:.3f} | ${s.liquidated_usd / 1e6:,.1f}M | "
                         f"{s.liquidated_share:.3%} | "
                         f"{s.liquidated_no_feedback_usd / s.open_interest_usd:.3%} | "
                         f"{'yes' if self.ok(s) else 'NO'} |")
        worst_r = max((s.drawdown_ratio for s in self.seeds), default=0.0)
        worst_l = max((s.liquidated_share for s in self.seeds), default=0.0)
        lines += ["", f"calm on {self.n_pass} of {len(self.seeds)} seeds; worst ratio "
                  f"{worst_r:.3f}, worst liquidated share {worst_l:.3%}: "
                  + ("PASS" if self.passed else "FAIL")]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"scenario": self.scenario, "positions": self.positions,
                "max_liquidated_share": self.max_liquidated_share,
                "max_drawdown_ratio": self.max_drawdown_ratio, "n_pass": self.n_pass,
                "passed": self.passed,
                "seeds": [{**dataclasses.asdict(s), "drawdown_ratio": s.drawdown_ratio,
                           "liquidated_share": s.liquidated_share, "calm": self.ok(s)}
                          for s in self.seeds]}


def _calm_seed(job) -> CalmSeed:
    """One seed of :func:`calm_check`, feedback on and off (a module-level function: workers
    run it)."""
    from cascade.runner import run

    quiet, positions, s = job
    res = run(quiet, positions=positions, seed=s, amplification=True)
    m = res.summary
    return CalmSeed(s, float(m["max_drawdown_pct"]), float(m["drawdown_no_feedback_pct"]),
                    float(m["liquidated_notional_usd"]), float(m["open_interest_start_usd"]),
                    float(m["liquidated_no_feedback_usd"]))


def calm_check(scenario, seeds: int = 20, positions: int | None = None, *,
               max_liquidated_share: float = 0.01, max_drawdown_ratio: float = 1.25,
               progress: bool = False, seed_start: int | None = None,
               workers: int | None = 1, scheduler: str | None = None) -> CalmReport:
    """Run ``scenario`` (a path or a Scenario) without flows or wicks on ``seeds`` seeds
    (``seed_start`` or its own seed, +1, ...), each with feedback on and off, and check the calm
    bounds above. ``workers`` / ``scheduler``: as :func:`cascade.analysis.parallel.run_many`
    (default serial, in this process); the result does not depend on them."""
    from cascade.analysis.parallel import run_many
    from cascade.model.scenario import Scenario, load_scenario

    sc = scenario if isinstance(scenario, Scenario) else load_scenario(Path(scenario))
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise CascadeError(f"seeds: expected a whole number >= 1, got {seeds!r}")
    first = sc.scenario.seed if seed_start is None else int(seed_start)
    quiet = without_flows(sc)
    jobs = [(quiet, positions, first + i) for i in range(seeds)]
    out = run_many(_calm_seed, jobs, workers=workers, scheduler=scheduler, progress=progress,
                   desc=f"{sc.name} no flows", unit="seed")
    n = int(positions) if positions is not None else int(sc.population.positions)
    return CalmReport(sc.name, n, out, max_liquidated_share, max_drawdown_ratio)
