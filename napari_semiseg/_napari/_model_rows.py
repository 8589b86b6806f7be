"""Model versions as the panels list them (no napari, no Qt)."""

from __future__ import annotations

from dataclasses import dataclass

from ..workflows.models import card_name

#: Short headers (``HEADER_TIPS`` say them in full): at 1400×900 "Val. Dice" and "Iterations" pushed
#: Active out of the Fine-tune panel.
MODEL_COLUMNS = ("#", "Network", "Method", "From", "Dice", "Steps", "Status", "Active")
HEADER_TIPS = {"#": "The model version", "Network": "The network and how it reads a volume (its model card)",
               "Method": "How it was trained", "From": "The version it was fine-tuned from",
               "Dice": "Validation Dice of the weights it keeps, at the end of its run",
               "Steps": "Training steps done", "Status": "finished, or stopped before its last step",
               "Active": "The model Predict and Pseudo-label use"}
#: The column that gives way (its text elided in the middle) when the panel is narrow.
STRETCHED_COLUMN = MODEL_COLUMNS.index("Method")


@dataclass(frozen=True)
class ModelRow:
    """One model version in a table.

    Attributes:
        id: the model version.
        card: the card's name (the "Network" column).
        method: the training method.
        parent: the version it was fine-tuned from, or None.
        dice: the validation Dice recorded at the end of its run, or None.
        iterations: training steps done.
        status: "finished" or "stopped" (a run stopped before its last step), or "—".
        active: whether it is the project's active model.
    """

    id: int
    card: str
    method: str
    parent: int | None
    dice: float | None
    iterations: int | None
    status: str
    active: bool

    @classmethod
    def of(cls, model) -> "ModelRow":
        metrics = model.metrics or {}
        dice = metrics.get("validation_dice")
        return cls(model.id, card_name(model), model.method, model.parent_id,
                   None if dice is None else float(dice), metrics.get("iterations"),
                   str(metrics.get("status", "—")), bool(model.active))

    def cells(self) -> tuple:
        """The row's cells, in ``MODEL_COLUMNS`` order."""
        return (self.id, self.card, self.method, "—" if self.parent is None else self.parent,
                "—" if self.dice is None else f"{self.dice:.3f}",
                "—" if self.iterations is None else self.iterations, self.status,
                "●" if self.active else "")


def model_rows(project) -> list[ModelRow]:
    """Every model version of ``project``, oldest first."""
    return [ModelRow.of(model) for model in project.models()]


def describe_model(model) -> str:
    """A short label: "#3 cpu-small · supervised · Dice 0.812"."""
    row = ModelRow.of(model)
    dice = "" if row.dice is None else f" · Dice {row.dice:.3f}"
    return f"#{row.id} {row.card} · {row.method}{dice}"


__all__ = ["HEADER_TIPS", "MODEL_COLUMNS", "STRETCHED_COLUMN", "ModelRow", "describe_model", "model_rows"]
