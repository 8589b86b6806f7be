"""The project store: a folder with an SQLite catalogue of cases, label versions, models, runs.

No torch, napari or Qt here: the CLI, the engine and the napari panel all use this API.
A label or model version, once saved, is never overwritten or deleted; every write puts its
file in place atomically before one transaction records it, so a killed process or two
processes at once leave the project consistent.
"""

from ._files import FOLDERS
from ._import_folder import LABEL_SUFFIXES, case_id_of, import_folder
from ._import_la import import_la
from ._import_report import ImportProgress, ImportReport
from ._project import DB_NAME, Project
from ._records import Case, CaseSummary, LabelVersion, ModelVersion, RunRecord
from ._schema import LABEL_KINDS, SCHEMA_VERSION, SPLITS

__all__ = [
    "DB_NAME", "FOLDERS", "LABEL_KINDS", "LABEL_SUFFIXES", "SCHEMA_VERSION", "SPLITS", "Case",
    "CaseSummary", "ImportProgress", "ImportReport", "LabelVersion", "ModelVersion", "Project",
    "RunRecord", "case_id_of", "import_folder", "import_la",
]
