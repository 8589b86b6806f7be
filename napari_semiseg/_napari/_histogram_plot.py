"""Soft-label histograms inside a Qt widget: per gold class, before and after correction.

Two panels side by side, as in the PLC-KD supplement's Fig. 2: the teacher's soft labels
(before) and the corrected ones (after), each with the background voxels' and the foreground
voxels' distribution over 0..1 and a line at 0.5. Both axes are drawn and named, at the panel's
size: x the foreground probability 0..1, y the voxel count (log: the background outnumbers the
foreground by far, "1k" for a thousand). One legend above both names the gold classes; the
panel's table below gives the counts. matplotlib draws into a ``FigureCanvasQTAgg``.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

CLASS_COLOURS = {"background": "#3b8bd9", "foreground": "#e0a030"}
#: Bottom of the log-count axis.
LOG_FLOOR = 0.7
STAGES = (("before", "Teacher (before)"), ("after", "Corrected (after)"))
X_LABEL = "foreground probability"
Y_LABEL = "voxel count"
#: Legend entries, one per gold class (the counts are in the panel's table).
LEGEND = tuple((name, f"gold {name}") for name in ("background", "foreground"))
#: Pixels the figure needs for two readable panels with their axes, titles and legend.
MIN_HEIGHT = 170
FONT_SIZE = 8


class SoftLabelHistogramPlot(QWidget):
    """Histograms of ``SoftLabelHistograms``; ``legend_texts()`` says what each colour shows."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.figure = Figure(figsize=(4.4, 1.7), dpi=100, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.canvas.setMinimumHeight(MIN_HEIGHT)
        self.setMinimumHeight(MIN_HEIGHT)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.histograms = None
        self.show_histograms(None)

    def show_histograms(self, histograms) -> None:
        """Draw ``histograms`` (a ``SoftLabelHistograms``), or an empty hint for None."""
        if histograms is None and self.histograms is None and getattr(self, "axes", None):
            return  # the empty hint is already drawn (a redraw costs 0.2-0.6 s of the GUI thread)
        self.histograms = histograms
        self.figure.clear()
        axes = self.figure.subplots(1, 2, sharey=True)
        self.axes = dict(zip((stage for stage, _title in STAGES), axes))
        peak = 10.0 if histograms is None else _peak(histograms)
        for (stage, title), ax in zip(STAGES, axes):
            _draw_axes(ax, title, peak)
            if histograms is None:
                ax.text(0.5, 0.5, "no correction yet", ha="center", va="center", fontsize=FONT_SIZE,
                        transform=ax.transAxes, color="#888888")
            else:
                _draw_stage(ax, histograms, stage)
        axes[0].set_ylabel(Y_LABEL, fontsize=FONT_SIZE)
        axes[1].tick_params(labelleft=False)  # the y axis is shared: its numbers once, on the left
        self.legend = self.figure.legend(
            handles=[Patch(color=CLASS_COLOURS[name], alpha=0.55, label=text) for name, text in LEGEND],
            loc="outside upper center", ncols=len(LEGEND), fontsize=FONT_SIZE, frameon=False,
            handlelength=1.2, borderpad=0.1)
        self.canvas.draw_idle()

    def legend_texts(self) -> list[str]:
        """The legend's entries: what each colour shows."""
        return [text.get_text() for text in self.legend.get_texts()]


def _draw_axes(ax, title: str, peak: float) -> None:
    """Both axes, named and numbered: probability 0..1 and a log voxel count."""
    ax.set_title(title, fontsize=FONT_SIZE + 1)
    ax.set_xlim(0.0, 1.0)
    ax.set_xticks([0.0, 0.5, 1.0], ["0", "0.5", "1"])
    ax.set_xlabel(X_LABEL, fontsize=FONT_SIZE)
    ax.axvline(0.5, color="#888888", lw=1, ls="--")
    ax.set_yscale("log")
    ax.set_ylim(LOG_FLOOR, max(peak, 10.0) * 2)
    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=4))  # every 10×, thinned to fit
    ax.yaxis.set_major_formatter(FuncFormatter(_short_count))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(labelsize=FONT_SIZE - 1)


def _draw_stage(ax, histograms, stage: str) -> None:
    """The background and foreground voxels' histograms, filled down to just under 1 so that
    empty bins stay empty on the log axis."""
    counts = getattr(histograms, stage)
    edges = np.asarray(histograms.edges)
    for name, _text in LEGEND:
        ax.stairs(np.asarray(counts[name]), edges, fill=True, alpha=0.55, color=CLASS_COLOURS[name],
                  baseline=LOG_FLOOR)


def _short_count(value: float, _position=None) -> str:
    """1, 10, 100, 1k, 10k, 100k, 1M: tick numbers that fit beside a narrow panel."""
    for divisor, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= divisor:
            return f"{value / divisor:g}{suffix}"
    return f"{value:g}"


def _peak(histograms) -> float:
    """The largest bin count of both stages and classes."""
    return float(max(np.max(counts) for stage in ("before", "after")
                     for counts in getattr(histograms, stage).values()))


__all__ = ["SoftLabelHistogramPlot"]
