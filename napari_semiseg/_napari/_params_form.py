"""A method's hyperparameters as a form: one editable field each, parsed back to its default's type."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QCheckBox, QFormLayout, QLabel, QLineEdit, QWidget

from ._finetune_job import format_param, parse_param


class ParamsForm(QWidget):
    """One editable field per hyperparameter of a method (a check box for booleans)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._layout = QFormLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._defaults: dict[str, Any] = {}
        self.fields: dict[str, QWidget] = {}

    def set_params(self, values: dict[str, Any], descriptions: dict[str, str] | None = None) -> None:
        """One field per value; ``descriptions`` (name → text) become the fields' tooltips."""
        while self._layout.rowCount():
            self._layout.removeRow(0)
        self._defaults, self.fields = dict(values), {}
        for name, value in values.items():
            if isinstance(value, bool):
                field = QCheckBox()
                field.setChecked(value)
            else:
                field = QLineEdit(format_param(value))
            field.setToolTip(f"{name}: {(descriptions or {}).get(name) or 'a setting of the method'} "
                             f"(default {format_param(value)})")
            self.fields[name] = field
            self._layout.addRow(name, field)
        if not values:
            self._layout.addRow(QLabel("(no hyperparameters)"))

    def set_values(self, values: dict[str, Any]) -> None:
        """Show new values in the fields of those names (the others keep what was typed)."""
        for name, value in values.items():
            field = self.fields.get(name)
            if isinstance(field, QCheckBox):
                field.setChecked(bool(value))
            elif field is not None:
                field.setText(format_param(value))

    def values(self) -> dict[str, Any]:
        """The typed values, each parsed as the type of its default.

        Raises:
            ProjectError: a field does not hold a value of its type.
        """
        values = {}
        for name, field in self.fields.items():
            if isinstance(field, QCheckBox):
                values[name] = field.isChecked()
            else:
                values[name] = parse_param(field.text(), self._defaults[name], name)
        return values


__all__ = ["ParamsForm"]
