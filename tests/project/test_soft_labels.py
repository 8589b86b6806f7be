"""Soft labels in the project store: the 8-bit codec's documented error, the files and rows,
their summary, their links, and a catalogue of schema version 1 brought forward."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest

from napari_semiseg.errors import ProjectError
from napari_semiseg.io import Volume, write_volume
from napari_semiseg.project import (SCHEMA_VERSION, SOFT_LABEL_MAX_ERROR, Project, decode_soft_label,
                                    encode_soft_label)
from napari_semiseg.project._schema import MIGRATIONS

SHAPE = (5, 6, 7)


@pytest.fixture
def project(tmp_path):
    with Project.create(tmp_path / "project") as project:
        for case_id in ("a", "b"):
            path = tmp_path / f"{case_id}.nii.gz"
            write_volume(path, Volume.from_array(np.zeros(SHAPE, np.float32)))
            project.add_case(case_id, path)
        yield project


@pytest.fixture
def model(project, tmp_path):
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"any bytes: the store does not read checkpoints")
    return project.register_model({"name": "m"}, weights, method="supervised", config={}, metrics={})


def random_probabilities(k: int, shape=SHAPE, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(k), size=shape).astype(np.float32)
    return np.moveaxis(p, -1, 0)


# -- the codec ----------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [2, 3, 4])
def test_round_trip_error_is_within_the_documented_bound(k):
    p = random_probabilities(k, shape=(20, 30, 40))
    codes = encode_soft_label(p)
    assert codes.dtype == np.uint8 and codes.shape == (k - 1, 20, 30, 40)
    back = decode_soft_label(codes)
    assert back.dtype == np.float32 and back.shape == p.shape
    assert SOFT_LABEL_MAX_ERROR == pytest.approx(1 / 510)
    foreground_error = np.abs(back[1:] - p[1:]).max()
    assert foreground_error <= 1 / 510 + 1e-6
    assert foreground_error > 1 / 510 * 0.9          # the bound is tight, not loose
    assert np.abs(back[0] - p[0]).max() <= (k - 1) / 510 + 1e-6


def test_binary_soft_labels_keep_their_side_of_one_half():
    just = np.nextafter(np.float32(0.5), np.float32(1))
    below = np.nextafter(np.float32(0.5), np.float32(0))
    fg = np.array([0.0, below, 0.5, just, 1.0, 0.25, 0.75], np.float32).reshape(1, 1, 7)
    back = decode_soft_label(encode_soft_label(np.stack([1 - fg, fg])))[1].ravel()
    assert back[1] < 0.5 < back[3] and back[0] == 0.0 and back[4] == 1.0
    assert back[2] == pytest.approx(128 / 255)       # exactly 0.5 rounds up; no code is 0.5
    np.testing.assert_array_equal(back > 0.5, fg.ravel() >= 0.5)


# -- the store ------------------------------------------------------------------------------------

def test_saved_soft_label_loads_back_and_links_to_its_label_and_model(project, model):
    p = random_probabilities(2)
    version = project.save_label("a", (p[1] > 0.5).astype(np.uint8), "pseudo", model_id=model.id)
    soft = project.save_soft_label("a", p, label_version_id=version.id, model_id=model.id)

    assert (soft.case_id, soft.label_version_id, soft.model_id, soft.kind, soft.num_classes) == \
        ("a", version.id, model.id, "teacher", 2)
    assert soft.encoding == "uint8/255" and soft.path.suffix == ".npz"
    assert soft.path.is_relative_to(project.root / "labels" / "a")
    assert np.abs(project.load_soft_label(soft.id) - p).max() <= SOFT_LABEL_MAX_ERROR + 1e-6
    assert project.soft_label_for(version.id) == soft
    assert project.soft_labels("a") == [soft] and project.soft_labels("b") == []
    with np.load(soft.path, allow_pickle=False) as stored:
        assert stored["codes"].dtype == np.uint8 and stored["codes"].shape == (1, *SHAPE)


def test_a_foreground_map_is_taken_as_a_binary_soft_label(project):
    version = project.save_label("a", np.zeros(SHAPE, np.uint8), "prediction")
    fg = np.full(SHAPE, 0.2, np.float32)
    soft = project.save_soft_label("a", fg, label_version_id=version.id)
    np.testing.assert_allclose(project.load_soft_label(soft)[1], 0.2, atol=SOFT_LABEL_MAX_ERROR)


def test_the_summary_row_holds_entropy_confidence_and_foreground_fraction(project, model):
    # half the voxels certain foreground, half at p = 0.2 (51/255: stored exactly)
    fg = np.full(SHAPE, 0.2, np.float32)
    fg[:, :3] = 1.0
    version = project.save_label("a", (fg > 0.5).astype(np.uint8), "pseudo", model_id=model.id)
    soft = project.save_soft_label("a", fg, label_version_id=version.id, model_id=model.id)

    h = -(0.2 * math.log(0.2) + 0.8 * math.log(0.8)) / math.log(2)   # 0.7219 bits
    certain = 3 / 6
    summary = project.case_uncertainty("a")
    assert summary == soft.summary
    assert summary.mean_entropy == pytest.approx((1 - certain) * h, rel=1e-5)
    assert summary.max_entropy == pytest.approx(h, rel=1e-5)
    assert summary.mean_confidence == pytest.approx(certain * 1.0 + (1 - certain) * 0.8, rel=1e-5)
    assert summary.foreground_fraction == pytest.approx(certain)
    assert summary.model_id == model.id and summary.soft_label_id == soft.id
    assert project.case_uncertainty("b") is None


def test_case_uncertainty_is_the_newest_teacher_soft_label(project, model, tmp_path):
    version = project.save_label("a", np.zeros(SHAPE, np.uint8), "pseudo")
    project.save_soft_label("a", np.full(SHAPE, 0.5, np.float32), label_version_id=version.id,
                            model_id=model.id)
    newer = project.save_soft_label("a", np.zeros(SHAPE, np.float32), label_version_id=version.id)
    assert project.case_uncertainty("a").soft_label_id == newer.id
    assert project.case_uncertainty("a").mean_entropy == 0.0
    assert project.case_uncertainty("a", model_id=model.id).mean_entropy == pytest.approx(1.0, abs=1e-4)


def test_label_and_soft_label_are_saved_together_or_not_at_all(project, model):
    labels = np.ones(SHAPE, np.uint8)
    version, soft = project.save_label_with_soft_label("a", labels, "pseudo", random_probabilities(2),
                                                       model_id=model.id, note="run 1")
    assert soft.label_version_id == version.id and version.kind == "pseudo"
    files = sorted(p.name for p in (project.root / "labels").rglob("*") if p.is_file())

    with pytest.raises(ProjectError, match="sum to 1"):
        project.save_label_with_soft_label("a", labels, "pseudo", np.full((2, *SHAPE), 0.9, np.float32))
    assert project.label_versions("a") == [version]
    assert sorted(p.name for p in (project.root / "labels").rglob("*") if p.is_file()) == files


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 5, 6, 8), np.float32), "do not fit the case's grid"),
    (np.full((2, *SHAPE), 3.0, np.float32), "logits"),
    (np.full((2, *SHAPE), np.nan, np.float32), "NaN"),
    (np.zeros((2, *SHAPE), np.uint8), "floating point"),
])
def test_arrays_that_are_not_soft_labels_of_the_case_are_refused(project, bad, message):
    version = project.save_label("a", np.zeros(SHAPE, np.uint8), "prediction")
    with pytest.raises(ProjectError, match=message):
        project.save_soft_label("a", bad, label_version_id=version.id)
    assert project.soft_labels() == []


def test_links_to_other_cases_and_unknown_records_are_refused(project):
    version_b = project.save_label("b", np.zeros(SHAPE, np.uint8), "prediction")
    p = random_probabilities(2)
    with pytest.raises(ProjectError, match="belongs to case 'b'"):
        project.save_soft_label("a", p, label_version_id=version_b.id)
    with pytest.raises(ProjectError, match="no model version 9"):
        project.save_soft_label("b", p, label_version_id=version_b.id, model_id=9)
    with pytest.raises(ProjectError, match="unknown soft-label kind"):
        project.save_soft_label("b", p, label_version_id=version_b.id, kind="guess")
    soft_b = project.save_soft_label("b", p, label_version_id=version_b.id)
    version_a = project.save_label("a", np.zeros(SHAPE, np.uint8), "corrected")
    with pytest.raises(ProjectError, match="another case"):
        project.save_soft_label("a", p, label_version_id=version_a.id, kind="corrected",
                                parent_id=soft_b.id)


def test_soft_labels_are_never_modified_or_deleted(project):
    version = project.save_label("a", np.zeros(SHAPE, np.uint8), "prediction")
    project.save_soft_label("a", random_probabilities(2), label_version_id=version.id)
    with sqlite3.connect(project.root / "project.db") as conn:
        with pytest.raises(sqlite3.IntegrityError, match="never modified"):
            conn.execute("UPDATE soft_labels SET kind = 'corrected'")
        with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
            conn.execute("DELETE FROM soft_labels")


def test_garbage_collection_keeps_soft_labels_and_check_sees_damage(project):
    version = project.save_label("a", np.zeros(SHAPE, np.uint8), "prediction")
    soft = project.save_soft_label("a", random_probabilities(2), label_version_id=version.id)
    orphan = soft.path.with_name("soft-orphan.npz")
    orphan.write_bytes(soft.path.read_bytes())

    assert project.collect_garbage() == [orphan]
    assert soft.path.is_file() and project.check() == []
    soft.path.write_bytes(b"damaged")
    assert any("soft label" in problem and "SHA-256" in problem for problem in project.check())
    with pytest.raises(ProjectError, match="not a readable soft-label file"):
        project.load_soft_label(soft.id)


def test_a_schema_1_project_is_brought_forward_and_keeps_its_labels(tmp_path):
    folder = tmp_path / "old"
    image = tmp_path / "a.nii.gz"
    write_volume(image, Volume.from_array(np.zeros(SHAPE, np.float32)))
    # a catalogue exactly as the first release wrote it
    folder.mkdir()
    with sqlite3.connect(folder / "project.db") as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("UPDATE schema_version SET version = 1")
    with Project.open(folder) as project:
        project.add_case("a", image)
        old = project.save_label("a", np.ones(SHAPE, np.uint8), "gold")
    with sqlite3.connect(folder / "project.db") as conn:
        conn.execute("DROP TABLE soft_labels")        # as if saved by the first release
        conn.execute("ALTER TABLE runs DROP COLUMN process_start")
        conn.execute("DROP TABLE dicom_sources")
        conn.execute("UPDATE schema_version SET version = 1")

    with Project.open(folder) as project:
        assert SCHEMA_VERSION == 4
        assert project.label_versions("a") == [old]
        soft = project.save_soft_label("a", random_probabilities(2), label_version_id=old.id)
        assert project.soft_label_for(old.id) == soft
        assert project.check() == []
