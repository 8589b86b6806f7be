"""What every dock panel shares: a status line, errors as notifications, Cancel of its job."""

from __future__ import annotations

from napari.utils.notifications import show_error


class PanelStatus:
    """A panel's status line (red for an error) and its error notifications.

    Mixed into a ``QWidget`` panel that has a ``status_label`` (a ``QLabel``).
    """

    def set_status(self, text: str, error: bool = False) -> None:
        self.status_label.setText(text)
        self.status_label.setStyleSheet("color: #e06060;" if error else "")

    def _report_error(self, message: str) -> None:
        self.set_status(message, error=True)
        show_error(message)


class JobPanel(PanelStatus):
    """A panel that runs one background job at a time (``self.job``, a ``GeneratorJob``)."""

    def cancel(self) -> None:
        """Stop the running job at its next step: between two window batches or two cases;
        what the job finished before stays (the panel's status says what that is)."""
        if self.job is not None and self.job.running:
            self.set_status("Cancelling…")
            self.job.cancel()


__all__ = ["JobPanel", "PanelStatus"]
