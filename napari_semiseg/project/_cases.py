"""Cases: the volumes of a project, referenced in place or copied in."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..errors import ProjectError
from ..io import Volume, read_volume
from ..io._atomic import atomic_path
from ..io._data_files import external_data_files
from ..io._formats import detect_format
from ..io._volume import Geometry
from ._dicom_sources import series_headers
from ._files import check_case_id, unique_stem, utc_now
from ._json import dumps, loads
from ._records import Case, CaseSummary
from ._schema import SPLITS


class CaseStore:
    """The case half of ``Project`` (uses ``self._db``, ``self.root``, ``self._absolute``)."""

    def add_case(self, case_id: str, image_path: str | Path, *, modality: str = "MR",
                 split: str = "unlabelled", copy: bool = False,
                 volume: Volume | None = None) -> Case:
        """Add a volume to the project, or return the case when it is already there.

        Args:
            case_id: the case's name (letters, digits, ``. _ + -``).
            image_path: the image file or DICOM folder.
            modality: "MR", "CT", ... (free text, used by cards' preprocessing).
            split: one of ``SPLITS``.
            copy: copy the image into the project (``images/<case>/<unique>/``, with the data
                files a MetaImage/NRRD header names) instead of referencing it where it lies.
                A DICOM series' headers (no pixel data) are kept either way, for DICOM-SEG
                export (``_dicom_sources``).
            volume: the image as ``io.read_volume`` returned it, when the caller has read it
                already; read here otherwise. Either way every voxel has been read and checked
                (complete, finite, real numbers) before anything is added, so that a damaged
                file is refused at import, not halfway through a training run.

        Returns:
            The new case, or the existing one when ``case_id`` is already in the project
            with the same image (so imports can be re-run).

        Raises:
            ProjectError: the id is taken by another image, or ``split`` is unknown.
            VolumeError: the image cannot be read or its voxels are refused (see
                ``io.read_volume``); nothing is added.
        """
        check_case_id(case_id)
        _check_split(split)
        source = Path(image_path).expanduser().resolve()
        existing = self._case_or_none(case_id)
        if existing is not None:
            return self._same_case_or_raise(existing, source)
        geometry = (volume if volume is not None else read_volume(source)).geometry
        dicom_headers = series_headers(source)  # read before the write lock is taken
        with self._db.write() as conn:
            # Another process may have added it since the check above.
            existing = self._case_or_none(case_id)
            if existing is not None:
                return self._same_case_or_raise(existing, source)
            stored = self._copy_image_in(case_id, source) if copy else self.stored_path(source)
            conn.execute(
                "INSERT INTO cases (id, image_path, geometry, modality, split, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (case_id, stored, dumps(geometry.to_dict()), modality, split, utc_now()))
            if dicom_headers is not None:
                self._keep_dicom_headers(conn, case_id, dicom_headers)
        return self.case(case_id)

    def _same_case_or_raise(self, existing: Case, source: Path) -> Case:
        copied_in = self.root in existing.image_path.parents
        same = (existing.image_path.name == source.name if copied_in
                else existing.image_path == source)
        if not same:
            raise ProjectError(f"case {existing.id!r} is already in {self.root} with image "
                               f"{existing.image_path}, not {source}")
        return existing

    def _copy_image_in(self, case_id: str, source: Path) -> str:
        """Copy an image file (or DICOM folder) into ``images/<case>/<unique>/``.

        Returns:
            The path to store, relative to the project.
        """
        # A fresh folder per copy: a copy left by a killed process is never in the way.
        destination = self.path_for("images", f"{case_id}/{unique_stem()}/{source.name}")
        # Unless the case's row commits, the fresh folder and whatever reached it go again.
        self._db.undo_on_rollback(lambda: shutil.rmtree(destination.parent, ignore_errors=True))
        try:
            _copy(source, destination)
        except OSError as error:  # a full disk, the file-size limit: the copy is at fault, not the source
            raise ProjectError(f"{destination}: cannot copy {source} into the project, nothing was "
                               f"added: {error.strerror or error}") from None
        return self._relative(destination)

    def has_case(self, case_id: str) -> bool:
        return self._case_or_none(case_id) is not None

    def case(self, case_id: str) -> Case:
        """The case called ``case_id``.

        Raises:
            ProjectError: no such case.
        """
        case = self._case_or_none(case_id)
        if case is None:
            raise ProjectError(f"{self.root}: no case {case_id!r} in this project")
        return case

    def _case_or_none(self, case_id: str) -> Case | None:
        row = self._db.query_one("SELECT * FROM cases WHERE id = ?", (case_id,))
        return None if row is None else self._case_from_row(row)

    def _case_from_row(self, row) -> Case:
        return Case(id=row["id"], image_path=self._absolute(row["image_path"]),
                    geometry=Geometry.from_dict(loads(row["geometry"])),
                    modality=row["modality"], split=row["split"],
                    intensity_stats=loads(row["intensity_stats"]),
                    created=row["created"])

    def cases(self) -> list[CaseSummary]:
        """Every case, in the order they were added, with its label status."""
        rows = self._db.query(
            """SELECT c.id, c.geometry, c.modality, c.split,
                      (SELECT COUNT(*) FROM label_versions v WHERE v.case_id = c.id) AS n_versions,
                      (SELECT v.kind FROM label_versions v WHERE v.case_id = c.id
                        ORDER BY v.id DESC LIMIT 1) AS latest_kind
               FROM cases c ORDER BY c.rowid""")
        summaries = []
        for row in rows:
            geometry = Geometry.from_dict(loads(row["geometry"]))
            summaries.append(CaseSummary(row["id"], geometry.shape, geometry.spacing,
                                         row["modality"], row["split"], row["latest_kind"],
                                         row["n_versions"]))
        return summaries

    def case_ids(self, split: str | None = None) -> list[str]:
        """Case ids in the order they were added, optionally only those of one split."""
        if split is None:
            return [row[0] for row in self._db.query("SELECT id FROM cases ORDER BY rowid")]
        _check_split(split)
        return [row[0] for row in self._db.query(
            "SELECT id FROM cases WHERE split = ? ORDER BY rowid", (split,))]

    def set_split(self, case_id: str, split: str) -> Case:
        """Move a case to another split (e.g. carve a validation set out of the labelled)."""
        _check_split(split)
        self.case(case_id)
        with self._db.write() as conn:
            conn.execute("UPDATE cases SET split = ? WHERE id = ?", (split, case_id))
        return self.case(case_id)

    def load_image(self, case_id: str) -> Volume:
        """Read a case's image, checking that it still lies on the grid recorded at import.

        Raises:
            ProjectError: the file changed its grid since it was imported.
            VolumeError: the file cannot be read.
        """
        case = self.case(case_id)
        volume = read_volume(case.image_path)
        if not volume.geometry.matches(case.geometry):
            difference = case.geometry.describe_difference(volume.geometry)
            raise ProjectError(f"{case.image_path}: the image of case {case_id!r} changed since "
                               f"it was imported ({difference})")
        return volume

    def intensity_stats(self, case_id: str) -> dict:
        """min, max, mean, std, p0_5, p99_5 of a case's image; computed once, then recorded."""
        case = self.case(case_id)
        if case.intensity_stats is not None:
            return case.intensity_stats
        stats = compute_intensity_stats(self.load_image(case_id).array)
        with self._db.write() as conn:
            conn.execute("UPDATE cases SET intensity_stats = ? WHERE id = ?",
                         (dumps(stats), case_id))
        return stats


def compute_intensity_stats(array: np.ndarray) -> dict:
    """Summary statistics of the finite voxels of an image (floats, in the image's units)."""
    values = np.asarray(array, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {"min": None, "max": None, "mean": None, "std": None, "p0_5": None,
                "p99_5": None, "non_finite": int(values.size)}
    low, high = np.percentile(finite, [0.5, 99.5])
    return {"min": float(finite.min()), "max": float(finite.max()), "mean": float(finite.mean()),
            "std": float(finite.std()), "p0_5": float(low), "p99_5": float(high),
            "non_finite": int(values.size - finite.size)}


def _copy(source: Path, destination: Path) -> None:
    """Copy an image file (with the data files its header names) or a DICOM folder, whole or not at all."""
    if source.is_dir():
        # A DICOM folder: copy to a temporary sibling, then one rename.
        partial = destination.with_name(f".{destination.name}.part")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source, partial)
        partial.rename(destination)
        return
    # The data files first: a copied header never names a file that is not there yet.
    for data_file in external_data_files(source, detect_format(source)):
        with atomic_path(destination.parent / data_file.relative_to(source.parent)) as tmp:
            shutil.copyfile(data_file, tmp)
    with atomic_path(destination) as tmp:
        shutil.copyfile(source, tmp)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ProjectError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
