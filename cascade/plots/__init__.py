"""Charts. :mod:`~cascade.plots.waterfall`: the waterfall, the liquidation map and the insurance
fund of one run; :mod:`~cascade.plots.venues`: each venue's price, fund and ADL;
:mod:`~cascade.plots.sensitivity`: the tornado chart. matplotlib loads on first draw, not at
import."""

from cascade.plots.waterfall import (
    format_usd,
    plot_insurance,
    plot_liquidation_map,
    plot_waterfall,
)

__all__ = ["format_usd", "plot_insurance", "plot_liquidation_map", "plot_waterfall"]
