"""Soft-label histograms inside a Qt widget: per gold class, before and after correction.

Two panels side by side, as in the PLC-KD supplement's Fig. 2: the teacher's soft labels
(before) and the corrected ones (after), each with the background voxels' and the foreground
voxels' distribution over 0..1 (log counts: the background outnumbers the foreground by far),
a line at 0.5, and the counts in the legend. matplotlib draws into a ``FigureCanvasQTAgg``.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

CLASS_COLOURS = {"background": "#3b8bd9", "foreground": "#e0a030"}
#: Bottom of the log-count axis.
LOG_FLOOR = 0.7
STAGES = (("before", "Teacher (before)"), ("after", "Corrected (after)"))


class SoftLabelHistogramPlot(QWidget):
    """Histograms of ``SoftLabelHistograms``; ``legend_texts()`` says what each legend shows."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.figure = Figure(figsize=(4.4, 2.4), dpi=100, tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.canvas.setMinimumHeight(240)
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
        for (stage, title), ax in zip(STAGES, axes):
            ax.set_title(title, fontsize=9)
            ax.set_xlim(0.0, 1.0)
            ax.axvline(0.5, color="#888888", lw=1, ls="--")
            ax.set_xlabel("soft label (foreground probability)", fontsize=8)
            ax.tick_params(labelsize=7)
            if histograms is None:
                ax.text(0.5, 0.5, "no correction yet", ha="center", va="center", fontsize=8,
                        transform=ax.transAxes, color="#888888")
                continue
            self._draw_stage(ax, histograms, stage, _peak(histograms))
        axes[0].set_ylabel("voxels", fontsize=8)
        self.canvas.draw_idle()

    def _draw_stage(self, ax, histograms, stage: str, peak: float) -> None:
        counts = getattr(histograms, stage)
        wrong = getattr(histograms, f"wrong_{stage}")
        edges = np.asarray(histograms.edges)
        # Log counts, filled down to just under 1 so that empty bins stay empty.
        ax.set_yscale("log")
        for name in ("background", "foreground"):
            values = np.asarray(counts[name])
            ax.stairs(values, edges, fill=True, alpha=0.55, color=CLASS_COLOURS[name], baseline=LOG_FLOOR,
                      label=f"{name} {int(values.sum())} ({wrong[name]} wrong)")
        ax.set_ylim(LOG_FLOOR, max(peak, 1.0) * 300)  # headroom for the legend
        ax.legend(fontsize=7, loc="upper center", title="gold class: voxels", title_fontsize=7,
                  borderpad=0.3, handlelength=1.2, framealpha=0.8)

    def legend_texts(self, stage: str) -> list[str]:
        """The legend entries of one panel ("before" or "after")."""
        legend = self.axes[stage].get_legend()
        return [] if legend is None else [text.get_text() for text in legend.get_texts()]


def _peak(histograms) -> float:
    """The largest bin count of both stages and classes."""
    return float(max(np.max(counts) for stage in ("before", "after")
                     for counts in getattr(histograms, stage).values()))


__all__ = ["SoftLabelHistogramPlot"]
