"""Model versions as the panels list them (no napari, no Qt)."""

from __future__ import annotations

from dataclasses import dataclass

from ..workflows.models import card_name

MODEL_COLUMNS = ("Model", "Network", "Method", "Parent", "Val. Dice", "Iterations", "Status", "Active")


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


__all__ = ["MODEL_COLUMNS", "ModelRow", "describe_model", "model_rows"]
