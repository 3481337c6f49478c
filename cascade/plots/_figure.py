"""The figure class every chart draws on: an Agg canvas, no pyplot state, and a PNG repr so
that Jupyter shows a returned figure inline (imported only when a chart is drawn)."""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 120


class InlineFigure(Figure):
    """A :class:`matplotlib.figure.Figure` that IPython displays as a PNG (``_repr_png_``)."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=self.dpi)
        return buf.getvalue()


def new_figure(width: float, height: float, dpi: int = DPI) -> InlineFigure:
    """A pyplot-free figure (inches) with an Agg canvas and constrained layout."""
    fig = InlineFigure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig
