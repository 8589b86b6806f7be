"""A live training plot inside a Qt widget: loss per iteration and validation Dice.

matplotlib draws the figure with its Agg renderer in a thread of the widget's own, and the
widget shows each finished image. Drawing a small figure costs 50–400 ms of CPU (ticks, text
layout), which on the GUI thread would freeze the window that long at every new point; in a
thread it only takes turns with the GUI thread for the interpreter (every few milliseconds).
Requests are coalesced: however many points arrive while a drawing is under way, the next
drawing shows them all.

Only the render thread touches the ``Figure``; the GUI thread hands it copies of the data.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from qtpy.QtCore import QObject, Qt, QTimer, Signal
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

LOSS_COLOUR = "#3b8bd9"
DICE_COLOUR = "#e0a030"
DPI = 100


@dataclass(frozen=True)
class _Snapshot:
    """What one drawing shows (copies, so the GUI thread can go on appending)."""

    loss: tuple[tuple[int, float], ...]
    dice: tuple[tuple[int, float], ...]
    iterations: int | None
    size: tuple[int, int]          # pixels (width, height)
    background: str
    foreground: str


class _Renderer(QObject):
    """Draws snapshots in a daemon thread; ``rendered`` carries each image to the GUI thread."""

    rendered = Signal(QImage, int)  # the image, and how many points it shows

    def __init__(self):
        super().__init__()
        self._requests: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="semiseg-plot", daemon=True)
        self._thread.start()

    def request(self, snapshot: _Snapshot) -> None:
        self._requests.put(snapshot)

    def close(self) -> None:
        self._requests.put(None)

    def _run(self) -> None:
        figure = Figure(dpi=DPI)
        canvas = FigureCanvasAgg(figure)
        while True:
            snapshot = self._requests.get()
            while not self._requests.empty():  # only the newest state is worth drawing
                snapshot = self._requests.get()
            if snapshot is None:
                return
            image = _draw(figure, canvas, snapshot)
            try:
                self.rendered.emit(image, len(snapshot.loss) + len(snapshot.dice))
            except RuntimeError:  # the widget is gone
                return


def _draw(figure: Figure, canvas: FigureCanvasAgg, shot: _Snapshot) -> QImage:
    width, height = shot.size
    figure.set_size_inches(width / DPI, height / DPI)
    figure.clear()
    figure.set_facecolor(shot.background)
    loss_axes = figure.add_subplot(1, 1, 1)
    dice_axes = loss_axes.twinx()
    for axes in (loss_axes, dice_axes):
        axes.set_facecolor(shot.background)
        axes.tick_params(colors=shot.foreground, labelsize=8)
        for spine in axes.spines.values():
            spine.set_color(shot.foreground)
    (loss_line,) = loss_axes.plot([i for i, _ in shot.loss], [v for _, v in shot.loss], color=LOSS_COLOUR,
                                  lw=1.5, label="loss")
    (dice_line,) = dice_axes.plot([i for i, _ in shot.dice], [v for _, v in shot.dice], "o-",
                                  color=DICE_COLOUR, lw=1.5, ms=4, label="validation Dice")
    last = max([i for i, _ in shot.loss[-1:] + shot.dice[-1:]] + [shot.iterations or 1])
    loss_axes.set_xlim(0, last)
    loss_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    dice_axes.set_ylim(0.0, 1.0)
    loss_axes.set_xlabel("iteration", color=shot.foreground, fontsize=8)
    loss_axes.set_ylabel("loss", color=LOSS_COLOUR, fontsize=8)
    dice_axes.set_ylabel("validation Dice", color=DICE_COLOUR, fontsize=8)
    loss_axes.grid(alpha=0.25)
    loss_axes.legend(handles=[loss_line, dice_line], loc="upper right", fontsize=7, framealpha=0.6)
    figure.tight_layout(pad=0.4)
    canvas.draw()
    buffer = canvas.buffer_rgba()
    return QImage(bytes(buffer), buffer.shape[1], buffer.shape[0], QImage.Format_RGBA8888).copy()


class TrainingPlot(QWidget):
    """Total loss (left axis) and validation Dice (right axis, 0..1) against the iteration.

    Attributes:
        shown_points: how many points (losses + Dice values) the displayed image holds.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._image_label = QLabel(alignment=Qt.AlignCenter)
        self._image_label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Ignored)
        self.setMinimumHeight(200)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._image_label)
        self._loss: list[tuple[int, float]] = []
        self._dice: list[tuple[int, float]] = []
        self._iterations: int | None = None
        self.shown_points = -1
        self._renderer = _Renderer()
        self._renderer.rendered.connect(self._show)
        self._resize_timer = QTimer(self, singleShot=True, interval=100)
        self._resize_timer.timeout.connect(self._request)
        self.destroyed.connect(self._renderer.close)
        self._request()

    # -- data ----------------------------------------------------------------------------------

    @property
    def loss_points(self) -> list[tuple[int, float]]:
        return list(self._loss)

    @property
    def dice_points(self) -> list[tuple[int, float]]:
        return list(self._dice)

    @property
    def up_to_date(self) -> bool:
        """True when the displayed image shows every point added, at the widget's size."""
        pixmap = self._image_label.pixmap()
        fits = pixmap is not None and (pixmap.width(), pixmap.height()) == self._size()
        return fits and self.shown_points == len(self._loss) + len(self._dice)

    def add_loss(self, iteration: int, loss: float | None) -> None:
        """One iteration's total loss (a missing or non-finite loss is skipped)."""
        if loss is not None:
            self._loss.append((int(iteration), float(loss)))
            self._request()

    def add_dice(self, iteration: int, dice: float | None) -> None:
        """One validation's mean Dice, 0..1."""
        if dice is not None:
            self._dice.append((int(iteration), float(dice)))
            self._request()

    def clear(self, iterations: int | None = None) -> None:
        """Forget every point; the x axis spans ``iterations`` when given (the run's length)."""
        self._loss.clear()
        self._dice.clear()
        self._iterations = iterations
        self._request()

    def set_iterations(self, iterations: int | None) -> None:
        self._iterations = iterations
        self._request()

    # -- drawing ---------------------------------------------------------------------------------

    def _size(self) -> tuple[int, int]:
        return max(self.width(), 200), max(self.height(), 150)

    def _request(self) -> None:
        palette = self.palette()
        self._renderer.request(_Snapshot(tuple(self._loss), tuple(self._dice), self._iterations, self._size(),
                                         palette.window().color().name(), palette.windowText().color().name()))

    def _show(self, image: QImage, points: int) -> None:
        self._image_label.setPixmap(QPixmap.fromImage(image))
        self.shown_points = points
        if (image.width(), image.height()) != self._size():  # resized while it was drawn
            self._resize_timer.start()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._resize_timer.start()  # redraw at the new size once the resizing settles


__all__ = ["TrainingPlot"]
