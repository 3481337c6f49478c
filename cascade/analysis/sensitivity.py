"""One-at-a-time sensitivity of a scenario's outcome to its assumed parameters.

Each parameter is set to ``(1 - step)`` and ``(1 + step)`` times its value, everything else held
at the scenario's values, and the scenario is run again with the same seed and number of
positions. The two outputs measured are ``max_drawdown_pct`` and ``liquidated_notional_usd``
(from :attr:`cascade.result.Result.summary`), compared with the base run.

Every run builds its own population from the seed (leverage, long share, cross share ... change
the population), so a variant never depends on another run.

>>> from cascade.analysis.sensitivity import sensitivity                          # doctest: +SKIP
>>> s = sensitivity("scenarios/demo.toml", positions=100_000)              # doctest: +SKIP
>>> print(s.table_markdown()); s.plot("tornado.png")                       # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path

from cascade.errors import CascadeError
from cascade.model.scenario import SCHEMA, Field, Scenario, parse_scenario, venue_date
from cascade.plots.sensitivity import CLIP_MARK, format_value

# the assumed (non-fact) parameters of a scenario, in the order shown when nothing is sorted
PARAMS: tuple[str, ...] = (
    "market.depth_usd",
    "market.impact_exponent",
    "market.permanent_share",
    "market.news_permanent_share",
    "market.noise_permanent_share",
    "market.resilience_half_life_s",
    "market.depth_floor",
    "market.depth_vol_sensitivity",
    "market.depth_liq_sensitivity",
    "market.depth_liq_threshold",
    "market.depth_memory_s",
    "market.dip_buy_depth_share_per_pct",
    "market.dip_buy_max_depth_share",
    "market.dip_buy_threshold_pct",
    "market.reference_half_life_s",
    "market.fund_offload_depth_share_per_min",
    "market.fund_cap_multiple",
    "population.long_share",
    "population.cross_share",
    "population.cross_spare_margin_mean",
    "population.stop_loss_share",
    "flows.scale",
    "population.leverage_scale",
)
# the two forms of each dip-buying quantity (a scenario gives one): share of depth <-> USD
DIP_FORMS = {"dip_buy_depth_share_per_pct": "dip_buy_usd_per_s_per_pct",
             "dip_buy_usd_per_s_per_pct": "dip_buy_depth_share_per_pct",
             "dip_buy_max_depth_share": "dip_buy_max_usd_per_s",
             "dip_buy_max_usd_per_s": "dip_buy_max_depth_share"}
# synthetic parameters: a factor applied to a list of values, 1 in the scenario itself
FLOWS_SCALE = "flows.scale"
LEVERAGE_SCALE = "population.leverage_scale"
SYNTHETIC = (FLOWS_SCALE, LEVERAGE_SCALE)
OUTPUTS = ("max_drawdown_pct", "liquidated_notional_usd")


# ------------------------------------------------------------------------------------------------
# parameters and variants
# ------------------------------------------------------------------------------------------------


def resolve_params(params=None, *, option: str = "params") -> list[str]:
    """The parameter names to vary: all of :data:`PARAMS` (None), or the given subset.

    ``params`` is an iterable of names or one comma-separated string. Unknown or repeated names
    raise :class:`CascadeError` naming ``option`` and listing the valid names.
    """
    if params is None:
        return list(PARAMS)
    if isinstance(params, str):
        params = params.split(",")
    names = [str(p).strip() for p in params]
    names = [n for n in names if n]
    valid = ", ".join(PARAMS)
    if not names:
        raise CascadeError(f"{option}: expected a comma-separated list of parameters from: "
                           f"{valid}; got none")
    for n in names:
        if n not in PARAMS:
            raise CascadeError(f"{option}: unknown parameter {n!r}; expected a comma-separated "
                               f"list of: {valid}")
    seen = set()
    for n in names:
        if n in seen:
            raise CascadeError(f"{option}: parameter {n!r} given twice")
        seen.add(n)
    return names


def check_step(step, *, option: str = "step") -> float:
    """``step`` as a float in (0, 1): the variations are ``1 - step`` and ``1 + step``."""
    expected = (f"{option}: expected a number > 0 and < 1 (0.5: each parameter at 0.5x and "
                f"1.5x its value), got {step!r}")
    if isinstance(step, bool):
        raise CascadeError(expected)
    try:
        s = float(step)
    except (TypeError, ValueError):
        raise CascadeError(expected) from None
    if not (math.isfinite(s) and 0.0 < s < 1.0):
        raise CascadeError(expected)
    return s


def _field(name: str) -> Field:
    section, _, key = name.partition(".")
    return SCHEMA[section][key]


def base_value(sc: Scenario, name: str) -> float:
    """The scenario's value of a parameter (1 for the synthetic scale factors)."""
    if name in SYNTHETIC:
        return 1.0
    section, _, key = name.partition(".")
    return float(getattr(getattr(sc, section), key))


def _clip(value: float, field: Field) -> tuple[float, bool]:
    """``value`` clipped to the field's inclusive bounds; (value, clipped)."""
    v = value
    if field.lo is not None and v < field.lo:
        v = float(field.lo)
    if field.hi is not None and v > field.hi:
        v = float(field.hi)
    if (field.lo_open and field.lo is not None and v <= field.lo) or \
            (field.hi_open and field.hi is not None and v >= field.hi):
        raise CascadeError(f"{value:g} lies beyond an open bound of the range "
                           f"({field.expectation()}); use a smaller step")
    if field.kind == "int":
        v = float(round(v))
    return v, v != value


def max_leverage(sc: Scenario) -> float:
    """The highest leverage the scenario's bracket table allows (its first bracket's); with
    several venues, the lowest of theirs."""
    return min(top for top, _ in max_leverages(sc))


def max_leverages(sc: Scenario) -> list[tuple[float, bool]]:
    """Per venue (one for a single-venue scenario): (highest leverage its bracket table allows,
    whether the venue lists its own leverages)."""
    from cascade.rules.brackets import bracket_table

    if not sc.venues:
        table = bracket_table(sc.venue.name, sc.venue.symbol, venue_date(sc))
        return [(float(table.max_leverage[0]), False)]
    return [(float(bracket_table(v.rules, v.symbol, v.bracket_date or sc.scenario.start.date())
                   .max_leverage[0]), bool(v.leverages)) for v in sc.venues]


def skip_reason(sc: Scenario, name: str) -> str | None:
    """Why a parameter cannot be varied on this scenario, or None."""
    if name == FLOWS_SCALE:
        if not any(f.usd_per_min > 0 for f in sc.flows):
            return "no [[flows]] with a usd_per_min above 0: nothing to scale"
        return None
    if name == LEVERAGE_SCALE:
        return None
    section, _, key = name.partition(".")
    other = DIP_FORMS.get(key)
    if section == "market" and other and other in sc.raw.get("market", {}):
        return f"the scenario gives dip buying as market.{other}: vary that one"
    if getattr(getattr(sc, section), key, 0) is None:
        return "not set in this scenario"
    if base_value(sc, name) == 0:
        return "value is 0: cannot be scaled"
    return None


@dataclasses.dataclass(frozen=True)
class Variant:
    """A scenario with one parameter scaled.

    value : the parameter's value in ``scenario`` (the factor itself for the synthetic ones)
    clipped : the scaled value left the schema's range and was clipped to it
    note : what was clipped, for the table's notes ("" if nothing)
    """

    name: str
    factor: float
    scenario: Scenario
    value: float
    clipped: bool
    note: str = ""


def _rebuild(sc: Scenario, raw: dict) -> Scenario:
    return parse_scenario(raw, source=str(sc.path) if sc.path else "<sensitivity>",
                          base_dir=sc.path.parent if sc.path else None, path=sc.path)


def _num_text(v: float) -> str:
    return f"{v:g}"


def build_variant(sc: Scenario, name: str, factor: float) -> Variant:
    """``sc`` with parameter ``name`` multiplied by ``factor`` (clipped to the schema's range).

    Plain keys go through :meth:`Scenario.with_overrides`; ``flows.scale`` multiplies every
    ``[[flows]] usd_per_min`` and ``population.leverage_scale`` every entry of
    ``population.leverages`` (clipped to [1, the bracket table's maximum leverage], the range the
    scenario's validation allows). Raises CascadeError for an unknown name or a parameter that
    :func:`skip_reason` rejects.
    """
    resolve_params([name])
    reason = skip_reason(sc, name)
    if reason is not None:
        raise CascadeError(f"{name}: {reason}")
    factor = float(factor)
    if name == FLOWS_SCALE:
        raw = copy.deepcopy(sc.raw)
        for f in raw.get("flows", []):
            for key in ("usd_per_min", "oi_share_per_min"):
                if key in f:
                    f[key] = float(f[key]) * factor
        return Variant(name, factor, _rebuild(sc, raw), factor, False)
    if name == LEVERAGE_SCALE:
        field = SCHEMA["population"]["leverages"]
        lo = field.lo if field.lo is not None else 0.0
        raw = copy.deepcopy(sc.raw)
        notes = []

        def scale(levs, top, where):
            new, clipped = [], []
            for lev in levs:
                want = float(lev) * factor
                got = min(max(want, lo), top)
                new.append(got)
                if got != want:
                    clipped.append(f"{_num_text(lev)} x {factor:g} = {_num_text(want)} -> "
                                   f"{_num_text(got)}")
            if clipped:
                notes.append(f"{where} leverages clipped to [{lo:g}, {top:g}] (the bracket "
                             "maximum): " + ", ".join(clipped))
            return new

        # each venue's own leverages within its own table; the shared list within the lowest
        # maximum of the venues that use it
        tops = [top for top, own in max_leverages(sc) if not own]
        if tops:
            raw.setdefault("population", {})["leverages"] = scale(
                sc.population.leverages, min(tops), "population")
        for v, (top, own) in zip(raw.get("venues", []), max_leverages(sc)):
            if own:
                v["leverages"] = scale(v["leverages"], top, f"venue {v['name']}")
        note = "; ".join(notes)
        return Variant(name, factor, _rebuild(sc, raw), factor, bool(notes), note)
    field = _field(name)
    want = base_value(sc, name) * factor
    try:
        value, clipped = _clip(want, field)
    except CascadeError as exc:
        raise CascadeError(f"{name}: {exc}") from None
    variant = sc.with_overrides(**{name: value})
    note = (f"{name} {_num_text(want)} clipped to {_num_text(value)} "
            f"({field.expectation()})") if clipped else ""
    return Variant(name, factor, variant, value, clipped, note)


# ------------------------------------------------------------------------------------------------
# result
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    """One parameter's two variations and their outputs."""

    name: str
    unit: str
    base_value: float
    low_value: float
    high_value: float
    low_clipped: bool
    high_clipped: bool
    notes: list
    low: dict  # {"max_drawdown_pct": ..., "liquidated_notional_usd": ...}
    high: dict

    def swing(self, output: str, base: dict) -> float:
        """Width of the tornado bar: max - min of the low, base and high outputs."""
        vals = (self.low[output], base[output], self.high[output])
        return max(vals) - min(vals)


@dataclasses.dataclass
class SensitivityResult:
    """What :func:`sensitivity` measured.

    base : outputs of the base run ({"max_drawdown_pct", "liquidated_notional_usd"})
    base_summary : the whole summary of the base run (``timings`` removed)
    rows : one :class:`Row` per varied parameter, in the order they were run
    skipped : [{"name", "reason", "base_value", "unit"}] for parameters that could not be varied
    """

    scenario: str
    seed: int
    positions: int
    step: float
    base: dict
    base_summary: dict
    rows: list
    skipped: list
    runs: int
    elapsed_s: float

    def sorted_rows(self, output: str = "max_drawdown_pct") -> list:
        """Rows by decreasing swing of ``output`` (ties: the other output's swing)."""
        other = next(o for o in OUTPUTS if o != output)
        return sorted(self.rows, key=lambda r: (-r.swing(output, self.base),
                                                -r.swing(other, self.base)))

    # -- text -------------------------------------------------------------------------------------
    def table_markdown(self) -> str:
        """A markdown table (and notes) that can be pasted into the README."""
        from cascade.plots.waterfall import format_usd

        lo_f, hi_f = 1.0 - self.step, 1.0 + self.step
        b = self.base
        head = (f"One-at-a-time sensitivity of `{self.scenario}` (seed {self.seed}, "
                f"{self.positions:,} positions): each parameter at {lo_f:g}x and {hi_f:g}x its "
                f"value, everything else as in the scenario. Base run: max drawdown "
                f"{b['max_drawdown_pct']:.2f}%, liquidated "
                f"${format_usd(b['liquidated_notional_usd'])}.")
        columns = ("| parameter | low | base | high | drawdown low | drawdown high "
                   "| liquidated low | liquidated high | swing (drawdown / liquidated) |")
        lines = [head, "", columns, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        notes = []
        for r in self.sorted_rows():
            low = format_value(r.low_value, r.unit, synthetic=r.name in SYNTHETIC)
            high = format_value(r.high_value, r.unit, synthetic=r.name in SYNTHETIC)
            low += CLIP_MARK if r.low_clipped else ""
            high += CLIP_MARK if r.high_clipped else ""
            base = format_value(r.base_value, r.unit, synthetic=r.name in SYNTHETIC)
            sw_d = r.swing("max_drawdown_pct", b)
            sw_l = r.swing("liquidated_notional_usd", b)
            lines.append(
                f"| `{r.name}` | {low} | {base} | {high} "
                f"| {r.low['max_drawdown_pct']:.2f}% | {r.high['max_drawdown_pct']:.2f}% "
                f"| ${format_usd(r.low['liquidated_notional_usd'])} "
                f"| ${format_usd(r.high['liquidated_notional_usd'])} "
                f"| {sw_d:.2f} pp / ${format_usd(sw_l)} |")
            notes += r.notes
        for sk in self.skipped:
            base = format_value(sk["base_value"], sk["unit"], synthetic=sk["name"] in SYNTHETIC)
            lines.append(f"| `{sk['name']}` | — | {base} | — | — | — | — | — "
                         f"| skipped: {sk['reason']} |")
        lines.append("")
        lines.append("Sorted by the drawdown swing. Swing: the spread of the low, base and high "
                     "outcomes (max - min), in percentage points of drawdown and USD liquidated. "
                     "`flows.scale` multiplies every `[[flows]]` `usd_per_min` or "
                     "`oi_share_per_min` (the shock size), "
                     "`population.leverage_scale` every entry of `population.leverages`.")
        if notes:
            lines.append("")
            lines.append(f"{CLIP_MARK} clipped to the schema's range:")
            lines.append("")
            lines += [f"- {n}" for n in notes]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        """Plain, JSON-ready content (see ``sensitivity.json``)."""
        b = self.base
        params = []
        for r in self.sorted_rows():
            params.append({
                "name": r.name, "unit": r.unit, "base_value": r.base_value,
                "low_value": r.low_value, "high_value": r.high_value,
                "low_clipped": r.low_clipped, "high_clipped": r.high_clipped,
                "notes": list(r.notes), "synthetic": r.name in SYNTHETIC,
                "low": dict(r.low), "high": dict(r.high),
                "swing_drawdown_pct": r.swing("max_drawdown_pct", b),
                "swing_liquidated_usd": r.swing("liquidated_notional_usd", b),
            })
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "positions": self.positions,
            "step": self.step,
            "factors": [1.0 - self.step, 1.0 + self.step],
            "outputs": list(OUTPUTS),
            "base": dict(b),
            "parameters": params,
            "skipped": [dict(sk) for sk in self.skipped],
            "runs": self.runs,
            "elapsed_s": round(self.elapsed_s, 3),
            "version": self.base_summary.get("version"),
            "git_commit": self.base_summary.get("git_commit"),
            "scenario_digest": self.base_summary.get("scenario_digest"),
        }

    def save(self, out_dir) -> dict:
        """Write sensitivity.md, sensitivity.json and tornado.png into ``out_dir``.

        Each file is written under a temporary name and renamed, as
        :meth:`cascade.result.Result.save` does. Returns {name: path}.
        """
        import json

        from cascade.io.files import write_atomic

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {}

        def atomic(name, write):
            paths[name] = write_atomic(out, name, write)

        atomic("sensitivity.md", lambda p: p.write_text(self.table_markdown(), encoding="utf-8"))
        atomic("sensitivity.json", lambda p: p.write_text(
            json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"))
        atomic("tornado.png", self.plot)
        return paths

    def plot(self, path) -> Path:
        """Draw the tornado chart (two panels: drawdown, liquidated notional) to ``path``."""
        from cascade.plots.sensitivity import plot_tornado

        return plot_tornado(self.to_dict(), path)


# ------------------------------------------------------------------------------------------------
# the computation
# ------------------------------------------------------------------------------------------------


def _outputs(summary: dict) -> dict:
    return {k: float(summary[k]) for k in OUTPUTS}


def _one_run(job) -> dict | str:
    """The summary (without timings) of one sensitivity run, or the CascadeError's text of an
    explosive variant; ``job`` is (scenario, label, positions, seed). Variants that keep the
    population's inputs share one population per process (:mod:`cascade.analysis.sweep`)."""
    from cascade.analysis.sweep import simulate_task
    from cascade.runner import with_run_options

    s, _label, positions, seed = job
    try:
        res = simulate_task(with_run_options(s, positions, seed))
    except CascadeError as exc:  # an explosive variant: reported, not fatal
        return str(exc)
    return {k: v for k, v in res.summary.items() if k != "timings"}


def _population_key(job) -> str:
    """Runs that draw the same population share it on one worker."""
    from cascade.analysis.populations import population_key
    from cascade.runner import with_run_options

    s, _label, positions, seed = job
    return population_key(with_run_options(s, positions, seed))


def sensitivity(scenario, params=None, step: float = 0.5, positions: int | None = None,
                seed: int | None = None, progress: bool = False, *, workers: int | None = 1,
                scheduler: str | None = None) -> SensitivityResult:
    """One-at-a-time sensitivity of ``max_drawdown_pct`` and ``liquidated_notional_usd``.

    Parameters
    ----------
    scenario : path to a TOML file, or a :class:`~cascade.model.scenario.Scenario`
    params : names from :data:`PARAMS` (or a comma-separated string); default all of them
    step : each parameter runs at ``(1 - step)`` and ``(1 + step)`` times its value, 0 < step < 1
    positions, seed : as in :func:`cascade.runner.run`, the same for every run
    progress : a progress bar over the runs on stderr (shown only on a terminal)
    workers, scheduler : the engine that runs them (:func:`cascade.analysis.parallel.run_many`:
        local processes, None all cores, default 1: serial; or a dask scheduler's address); the
        results do not depend on it

    Parameters whose value is 0 (or, for ``flows.scale``, a scenario without flows) are skipped
    and listed in ``skipped``; a scaled value outside the schema's range is clipped to it.
    """
    from cascade.analysis.parallel import run_many
    from cascade.runner import _as_scenario

    t0 = time.perf_counter()
    sc = _as_scenario(scenario)
    names = resolve_params(params)
    step = check_step(step)
    factors = (1.0 - step, 1.0 + step)

    # build (and so validate) every variant before the first run
    plan, skipped = [], []
    for name in names:
        field = None if name in SYNTHETIC else _field(name)
        unit = field.unit if field is not None else ""
        reason = skip_reason(sc, name)
        if reason is not None:
            skipped.append({"name": name, "reason": reason,
                            "base_value": base_value(sc, name), "unit": unit})
            continue
        plan.append((name, unit, [build_variant(sc, name, f) for f in factors]))

    n_runs = 1 + 2 * len(plan)
    jobs = [(sc, "base")] + [(v.scenario, f"{name} x{v.factor:g}")
                             for name, _, pair in plan for v in pair]
    outcomes = run_many(_one_run, [(s, label, positions, seed) for s, label in jobs],
                        workers=workers, scheduler=scheduler, progress=progress,
                        desc=f"{sc.name}: sensitivity", key=_population_key)
    failures = [f"{label}: {o}" for (_, label), o in zip(jobs, outcomes) if isinstance(o, str)]
    base_summary = outcomes[0]
    if isinstance(base_summary, str):
        raise CascadeError(failures[0])
    base = _outputs(base_summary)
    rows = []
    for i, (name, unit, (lo, hi)) in enumerate(plan):
        out_lo, out_hi = (_outputs(o) if isinstance(o, dict) else {k: float("nan") for k in OUTPUTS}
                          for o in outcomes[1 + 2 * i: 3 + 2 * i])
        notes = [n for n in (lo.note, hi.note) if n]
        notes += [f"no result: {f}" for f in failures if f.startswith(f"{name} x")]
        rows.append(Row(name=name, unit=unit, base_value=base_value(sc, name),
                        low_value=lo.value, high_value=hi.value, low_clipped=lo.clipped,
                        high_clipped=hi.clipped, notes=notes, low=out_lo, high=out_hi))
    return SensitivityResult(
        scenario=sc.name, seed=int(base_summary["seed"]),
        positions=int(base_summary["positions_requested"]), step=step, base=base,
        base_summary=base_summary, rows=rows, skipped=skipped, runs=n_runs,
        elapsed_s=time.perf_counter() - t0)
