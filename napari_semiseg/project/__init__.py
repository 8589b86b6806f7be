"""The project store: a folder with an SQLite catalogue of cases, label versions, models, runs.

No torch, napari or Qt here: the CLI, the engine and the napari panel all use this API.
A label version, soft label or model version, once saved, is never overwritten or deleted;
every write puts its file in place atomically before one transaction records it, so a killed
process or two processes at once leave the project consistent.
"""

from ._dicom_sources import DicomSource
from ._files import FOLDERS
from ._import_folder import LABEL_SUFFIXES, case_id_of, import_folder
from ._import_la import import_la
from ._import_report import ImportProgress, ImportReport, RefusedFile
from ._project import DB_NAME, Project
from ._records import (Case, CaseSummary, LabelVersion, ModelVersion, RunRecord, SoftLabel,
                       UncertaintySummary)
from ._schema import GOLD_KINDS, LABEL_KINDS, SCHEMA_VERSION, SOFT_LABEL_KINDS, SPLITS
from ._soft_codec import (ENCODING as SOFT_LABEL_ENCODING, MAX_ERROR as SOFT_LABEL_MAX_ERROR,
                          SoftLabelStats, decode as decode_soft_label,
                          encode as encode_soft_label, summarise as summarise_soft_label)

__all__ = [
    "DB_NAME", "FOLDERS", "GOLD_KINDS", "LABEL_KINDS", "LABEL_SUFFIXES", "SCHEMA_VERSION", "SOFT_LABEL_ENCODING",
    "SOFT_LABEL_KINDS", "SOFT_LABEL_MAX_ERROR", "SPLITS", "Case", "CaseSummary", "DicomSource",
    "ImportProgress", "ImportReport", "LabelVersion", "ModelVersion", "Project", "RefusedFile", "RunRecord", "SoftLabel",
    "SoftLabelStats", "UncertaintySummary", "case_id_of", "decode_soft_label", "encode_soft_label",
    "import_folder", "import_la", "summarise_soft_label",
]
