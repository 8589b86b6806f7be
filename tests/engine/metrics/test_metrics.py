"""Metrics: our numpy/scipy Dice, Jaccard, 95HD, ASD against medpy itself and hand-worked cases.

medpy is the reference the LA/pancreas papers call (``medpy.metric.binary``); it is a test-only
dependency, and the package must not import it.
"""

from __future__ import annotations

import csv
import math
import subprocess
import sys

import numpy as np
import pytest
from medpy.metric import binary as medpy
from scipy import ndimage

from napari_semiseg.engine.metrics import (
    CSV_COLUMNS, MetricsInputError, asd, assd, dice, evaluate_case, evaluate_cases, hd95, jaccard,
    surface_distances, surface_mask, write_csv)
from napari_semiseg.engine.metrics._surface import directed_distances, surfaces

TOLERANCE = dict(rel=1e-6, abs=1e-6)


# ---------------------------------------------------------------- random shapes

def _blob(rng: np.random.Generator, shape: tuple[int, ...], fill: float) -> np.ndarray:
    """A smooth random blob filling about ``fill`` of the array (often touching its border)."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=rng.uniform(1.0, 2.5))
    return noise > np.quantile(noise, 1.0 - fill)


def _boxed_blob(rng, shape, fill):
    """A blob confined to a random sub-box, so it sits away from some array borders."""
    mask = np.zeros(shape, bool)
    lo = [rng.integers(0, n // 2) for n in shape]
    hi = [rng.integers(l + 2, n + 1) for l, n in zip(lo, shape)]
    box = tuple(slice(l, h) for l, h in zip(lo, hi))
    mask[box] = _blob(rng, mask[box].shape, fill)
    if not mask.any():
        mask[tuple(lo)] = True
    return mask


def _single_voxel(rng, shape):
    mask = np.zeros(shape, bool)
    mask[tuple(rng.integers(0, n) for n in shape)] = True
    return mask


def _pair(kind: str, rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A (prediction, reference) pair of one kind of geometry."""
    if kind == "independent":
        return _blob(rng, shape, rng.uniform(0.05, 0.4)), _blob(rng, shape, rng.uniform(0.05, 0.4))
    if kind == "perturbed":  # a realistic prediction: the reference, shifted and grown/shrunk
        reference = _boxed_blob(rng, shape, 0.4)
        shifted = ndimage.shift(reference.astype(float), rng.integers(-2, 3, size=3), order=0) > 0.5
        grown = ndimage.binary_dilation(shifted) if rng.random() < 0.5 else ndimage.binary_erosion(shifted)
        return (grown if grown.any() else reference), reference
    if kind == "nested":  # one object inside the other, surfaces never touching
        inner = _boxed_blob(rng, shape, 0.3)
        outer = ndimage.binary_dilation(inner, iterations=int(rng.integers(1, 4)))
        return (inner, outer) if rng.random() < 0.5 else (outer, inner)
    if kind == "single_voxels":
        return _single_voxel(rng, shape), _single_voxel(rng, shape)
    if kind == "voxel_vs_blob":
        return _single_voxel(rng, shape), _blob(rng, shape, 0.2)
    if kind == "full_array":  # every voxel on the array border: only border_value makes a surface
        return np.ones(shape, bool), _blob(rng, shape, 0.5)
    if kind == "thin_sheet":  # a one-voxel plate: erosion removes all of it, all of it is surface
        sheet = np.zeros(shape, bool)
        sheet[int(rng.integers(0, shape[0]))] = True
        return sheet, _boxed_blob(rng, shape, 0.3)
    raise ValueError(kind)


KINDS = ("independent", "perturbed", "nested", "single_voxels", "voxel_vs_blob", "full_array", "thin_sheet")
CASES = [(kind, seed) for kind in KINDS for seed in range(6)]


def _random_case(kind: str, seed: int):
    rng = np.random.default_rng(1000 * KINDS.index(kind) + seed)
    shape = tuple(int(n) for n in rng.integers(4, 22, size=3))
    prediction, reference = _pair(kind, rng, shape)
    spacing = tuple(float(s) for s in rng.uniform(0.3, 3.0, size=3))
    return prediction, reference, spacing


@pytest.mark.parametrize("kind,seed", CASES)
def test_every_metric_equals_medpy_on_random_shapes(kind, seed):
    prediction, reference, spacing = _random_case(kind, seed)
    assert prediction.any() and reference.any()
    assert dice(prediction, reference) == pytest.approx(medpy.dc(prediction, reference), **TOLERANCE)
    assert jaccard(prediction, reference) == pytest.approx(medpy.jc(prediction, reference), **TOLERANCE)
    for voxelspacing in (None, spacing):
        for ours, theirs in ((hd95, medpy.hd95), (asd, medpy.asd), (assd, medpy.assd)):
            assert ours(prediction, reference, voxelspacing) == pytest.approx(
                theirs(prediction, reference, voxelspacing), **TOLERANCE), (ours.__name__, voxelspacing)


@pytest.mark.parametrize("kind,seed", CASES[::3])
def test_evaluate_case_reports_medpy_values_in_voxels_and_mm(kind, seed):
    prediction, reference, spacing = _random_case(kind, seed)
    case = evaluate_case(prediction.astype(np.uint8), reference.astype(np.int16), spacing, case_id="c")
    assert case.dice == pytest.approx(medpy.dc(prediction, reference), **TOLERANCE)
    assert case.jaccard == pytest.approx(medpy.jc(prediction, reference), **TOLERANCE)
    assert case.hd95 == pytest.approx(medpy.hd95(prediction, reference), **TOLERANCE)
    assert case.asd == pytest.approx(medpy.asd(prediction, reference), **TOLERANCE)
    assert case.hd95_mm == pytest.approx(medpy.hd95(prediction, reference, spacing), **TOLERANCE)
    assert case.asd_mm == pytest.approx(medpy.asd(prediction, reference, spacing), **TOLERANCE)
    assert not case.empty_prediction and not case.empty_reference


def test_asd_is_directed_and_hd95_symmetric():
    prediction, reference, spacing = _random_case("nested", 1)
    assert asd(prediction, reference) != pytest.approx(asd(reference, prediction))
    assert hd95(prediction, reference, spacing) == pytest.approx(hd95(reference, prediction, spacing))


# ---------------------------------------------------------------- cropping

@pytest.mark.parametrize("kind,seed", CASES[::2])
def test_cropped_edt_equals_whole_array_edt(kind, seed):
    prediction, reference, spacing = _random_case(kind, seed)
    # pad with background on random sides so the crop really removes something
    rng = np.random.default_rng(seed)
    padding = [tuple(int(p) for p in rng.integers(0, 6, size=2)) for _ in range(3)]
    prediction, reference = np.pad(prediction, padding), np.pad(reference, padding)
    for voxelspacing in (None, spacing):
        whole = surface_distances(prediction, reference, voxelspacing, crop=False)
        for margin in (0, 1, 3):
            cropped = directed_distances(*surfaces(prediction, reference, margin=margin),
                                         voxelspacing)
            np.testing.assert_allclose(cropped.prediction_to_reference,
                                       whole.prediction_to_reference, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(cropped.reference_to_prediction,
                                       whole.reference_to_prediction, rtol=1e-12, atol=1e-12)


def test_crop_keeps_objects_touching_the_array_border_exact():
    reference = np.zeros((12, 12, 12), bool)
    reference[0:4, 0:5, 7:12] = True           # touches three array faces
    prediction = np.zeros_like(reference)
    prediction[0:3, 1:6, 8:12] = True
    whole = surface_distances(prediction, reference, crop=False)
    cropped = surface_distances(prediction, reference)
    np.testing.assert_array_equal(cropped.pooled(), whole.pooled())
    assert cropped.hd95() == pytest.approx(medpy.hd95(prediction, reference), **TOLERANCE)


# ---------------------------------------------------------------- hand-worked cases

def test_surface_is_object_minus_its_6_neighbour_erosion():
    cube = np.zeros((7, 7, 7), bool)
    cube[1:6, 1:6, 1:6] = True                  # 5³: surface = 125 − 3³ interior
    assert surface_mask(cube).sum() == 125 - 27
    corner = np.zeros((7, 7, 7), bool)
    corner[0:3, 0:3, 0:3] = True                # outside the array counts as background
    assert surface_mask(corner).sum() == 27 - 1


def test_line_against_a_voxel_pools_the_two_directed_sets():
    # P: 4 voxels along x; R: its first voxel. P→R = 0,1,2,3; R→P = 0.
    prediction = np.zeros((9, 9, 9), bool)
    prediction[4, 4, 2:6] = True
    reference = np.zeros_like(prediction)
    reference[4, 4, 2] = True
    # pooled sorted [0,0,1,2,3]: the 95th percentile sits at 0.95·4 = 3.8 → 2 + 0.8·(3−2) = 2.8.
    # (MONAI's max of the two directed 95th percentiles would give 2.85.)
    assert hd95(prediction, reference) == pytest.approx(2.8)
    assert asd(prediction, reference) == pytest.approx(1.5)     # (0+1+2+3)/4
    assert asd(reference, prediction) == pytest.approx(0.0)
    assert assd(prediction, reference) == pytest.approx(1.2)    # 6/5
    assert dice(prediction, reference) == pytest.approx(0.4)    # 2·1/(4+1)
    assert jaccard(prediction, reference) == pytest.approx(0.25)
    # x spacing 0.5 mm halves every distance
    assert hd95(prediction, reference, (2.0, 3.0, 0.5)) == pytest.approx(1.4)
    assert asd(prediction, reference, (2.0, 3.0, 0.5)) == pytest.approx(0.75)


def test_two_cubes_offset_along_x():
    # two 3³ cubes, the second shifted by 2 voxels in x: they share the x = 4 slab (9 voxels).
    prediction = np.zeros((8, 8, 10), bool)
    prediction[2:5, 2:5, 2:5] = True
    reference = np.zeros_like(prediction)
    reference[2:5, 2:5, 4:7] = True
    assert dice(prediction, reference) == pytest.approx(2 * 9 / 54)
    assert jaccard(prediction, reference) == pytest.approx(9 / 45)
    # each surface: 26 voxels (the centre is interior); 9 at distance 0 (shared slab),
    # 8 at 1 (middle slab minus the centre), 9 at 2 (far face) → mean 26/26 = 1.
    assert asd(prediction, reference) == pytest.approx(1.0)
    # pooled: 18 zeros, 16 ones, 18 twos; position 0.95·51 = 48.45 falls in the twos
    assert hd95(prediction, reference) == pytest.approx(2.0)
    case = evaluate_case(prediction, reference, spacing=(1.0, 1.0, 0.5))
    assert (case.asd_mm, case.hd95_mm) == (pytest.approx(0.5), pytest.approx(1.0))
    assert (case.asd, case.hd95) == (pytest.approx(1.0), pytest.approx(2.0))


def test_cube_nested_in_a_larger_cube():
    reference = np.zeros((9, 9, 9), bool)
    reference[2:7, 2:7, 2:7] = True             # 5³, surface 98 voxels
    prediction = np.zeros_like(reference)
    prediction[3:6, 3:6, 3:6] = True            # 3³ inside it, surface 26 voxels
    # P→R: every P surface voxel is one step from an outer face → 26 × 1.
    # R→P: 54 face voxels at 1, 36 edge voxels at √2, 8 corners at √3.
    assert asd(prediction, reference) == pytest.approx(1.0)
    assert asd(reference, prediction) == pytest.approx((54 + 36 * math.sqrt(2) + 8 * math.sqrt(3)) / 98)
    # pooled sorted: 80 ones, 36 √2, 8 √3; 0.95·123 = 116.85 lies among the √3 (indices 116..123)
    assert hd95(prediction, reference) == pytest.approx(math.sqrt(3))
    assert assd(prediction, reference) == pytest.approx((80 + 36 * math.sqrt(2) + 8 * math.sqrt(3)) / 124)
    assert dice(prediction, reference) == pytest.approx(54 / 152)
    assert jaccard(prediction, reference) == pytest.approx(27 / 125)


def test_single_voxels_diagonal_apart_with_anisotropic_spacing():
    prediction = np.zeros((6, 8, 5), bool)
    prediction[1, 2, 3] = True
    reference = np.zeros_like(prediction)
    reference[3, 5, 3] = True                   # (2, 3, 0) voxels apart
    case = evaluate_case(prediction, reference, spacing=(2.0, 1.0, 7.0))
    assert case.hd95 == pytest.approx(math.sqrt(13)) and case.asd == pytest.approx(math.sqrt(13))
    assert case.hd95_mm == pytest.approx(5.0) and case.asd_mm == pytest.approx(5.0)   # √(4² + 3²)
    assert case.dice == 0.0 and case.jaccard == 0.0


# ---------------------------------------------------------------- empty masks

def _cube(shape=(10, 10, 10), where=slice(3, 7)):
    mask = np.zeros(shape, np.uint8)
    mask[where, where, where] = 1
    return mask


def test_empty_prediction_scores_zero_on_all_four_metrics_and_is_flagged():
    reference = _cube()
    empty = np.zeros_like(reference)
    case = evaluate_case(empty, reference, spacing=(1.0, 0.6, 0.6), case_id="missed")
    assert (case.dice, case.jaccard, case.hd95, case.asd, case.hd95_mm, case.asd_mm) == (0, 0, 0, 0, 0, 0)
    assert case.empty_prediction and not case.empty_reference
    assert (hd95(empty, reference), asd(empty, reference), dice(empty, reference)) == (0.0, 0.0, 0.0)


def test_empty_reference_gives_zero_overlap_undefined_distances_and_a_flag():
    prediction = _cube()
    case = evaluate_case(prediction, np.zeros_like(prediction), spacing=(1, 1, 1), case_id="false alarm")
    assert case.dice == 0.0 and case.jaccard == 0.0
    assert all(math.isnan(v) for v in (case.hd95, case.asd, case.hd95_mm, case.asd_mm))
    assert case.empty_reference and not case.empty_prediction
    assert math.isnan(hd95(prediction, np.zeros_like(prediction)))


def test_both_empty_is_perfect_agreement_flagged_twice():
    empty = np.zeros((5, 5, 5), np.uint8)
    case = evaluate_case(empty, empty)
    assert (case.dice, case.jaccard, case.hd95, case.asd) == (1.0, 1.0, 0.0, 0.0)
    assert case.empty_prediction and case.empty_reference
    # medpy's dc/jc mean 1.0 here (their ZeroDivisionError branch) but return NaN under numpy 2
    assert (dice(empty, empty), jaccard(empty, empty)) == (1.0, 1.0)


def test_means_keep_missed_cases_and_skip_undefined_distances():
    good_prediction, reference = _cube(where=slice(3, 7)), _cube(where=slice(2, 7))
    good = evaluate_case(good_prediction, reference)
    table = evaluate_cases([
        ("good", good_prediction, reference, None),
        ("missed", np.zeros_like(reference), reference, None),
        ("false alarm", good_prediction, np.zeros_like(reference), None)])
    mean = table.mean()
    assert mean.n_cases == 3 and mean.n_empty_prediction == 1 and mean.n_empty_reference == 1
    assert mean.dice == pytest.approx(good.dice / 3)
    assert mean.hd95 == pytest.approx(good.hd95 / 2)   # "good" and the 0 of "missed"; NaN skipped
    assert mean.hd95_mm is None


# ---------------------------------------------------------------- multi-class

def test_each_foreground_class_is_scored_like_its_binary_mask():
    rng = np.random.default_rng(7)
    shape = (14, 16, 12)
    reference = _blob(rng, shape, 0.3).astype(np.uint8) + 2 * _blob(rng, shape, 0.2) * 1
    reference[reference == 3] = 2
    prediction = reference.copy()
    prediction[ndimage.binary_dilation(reference == 1) & (reference == 0)] = 1
    prediction[ndimage.binary_erosion(reference == 2) ^ (reference == 2)] = 0
    spacing = (1.5, 0.8, 0.8)
    case = evaluate_case(prediction, reference, spacing)
    assert [m.label for m in case.per_class] == [1, 2]
    for metrics in case.per_class:
        p, r = prediction == metrics.label, reference == metrics.label
        assert metrics.dice == pytest.approx(medpy.dc(p, r), **TOLERANCE)
        assert metrics.hd95_mm == pytest.approx(medpy.hd95(p, r, spacing), **TOLERANCE)
        assert metrics.asd == pytest.approx(medpy.asd(p, r), **TOLERANCE)
    assert case.dice == pytest.approx(np.mean([m.dice for m in case.per_class]))
    only_two = evaluate_case(prediction, reference, spacing, classes=[2])
    assert only_two.dice == case.for_label(2).dice and len(only_two.per_class) == 1


def test_a_class_absent_from_the_reference_is_flagged_not_dropped():
    reference = _cube()
    prediction = reference.copy()
    prediction[0, 0, 0] = 2
    case = evaluate_case(prediction, reference)
    assert case.for_label(1).dice == 1.0
    assert case.for_label(2).empty_reference and case.for_label(2).dice == 0.0
    assert case.empty_reference and case.dice == 0.5


# ---------------------------------------------------------------- tables and CSV

def test_csv_has_the_header_one_row_per_case_and_a_mean_row(tmp_path):
    reference = _cube(where=slice(2, 7))
    table = evaluate_cases([
        ("case_a", _cube(where=slice(3, 7)), reference, (2.0, 0.5, 0.5)),
        ("case_b", np.zeros_like(reference), reference, (2.0, 0.5, 0.5))])
    path = tmp_path / "out" / "metrics.csv"
    path.parent.mkdir()
    path.write_text("stale content")
    assert write_csv(path, table) == path
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r[0] for r in rows[1:]] == ["case_a", "case_b", "mean"]
    first = dict(zip(CSV_COLUMNS, rows[1]))
    case_a = table.rows[0]
    assert float(first["dice"]) == case_a.dice and float(first["hd95_mm"]) == case_a.hd95_mm
    assert first["label"] == "1" and first["empty_prediction"] == "0"
    second = dict(zip(CSV_COLUMNS, rows[2]))
    assert second["empty_prediction"] == "1" and float(second["asd"]) == 0.0
    mean = dict(zip(CSV_COLUMNS, rows[3]))
    assert float(mean["jaccard"]) == pytest.approx(case_a.jaccard / 2) and mean["empty_prediction"] == "1"
    assert [p.name for p in path.parent.iterdir()] == ["metrics.csv"]   # no temp file left


def test_csv_without_spacing_leaves_mm_empty_and_writes_nan(tmp_path):
    prediction = _cube()
    table = evaluate_cases([("fp", prediction, np.zeros_like(prediction), None)])
    with open(table.to_csv(tmp_path / "m.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["hd95_mm"] == "" and rows[0]["hd95"] == "nan" and rows[0]["empty_reference"] == "1"


def test_format_table_shows_percent_distances_mm_and_flags():
    reference = _cube(where=slice(2, 7))
    prediction = _cube(where=slice(3, 7))
    expected = evaluate_case(prediction, reference, (2.0, 0.5, 0.5))
    text = evaluate_cases([("case_a", prediction, reference, (2.0, 0.5, 0.5)),
                           ("case_b", np.zeros_like(reference), reference, (2.0, 0.5, 0.5))]).format_table()
    lines = text.splitlines()
    assert lines[0].split()[:9] == ["case", "Dice", "%", "Jaccard", "%", "95HD", "ASD", "95HD", "mm"]
    case_a = next(line for line in lines if line.startswith("case_a")).split()
    assert case_a[1:7] == [f"{expected.dice * 100:.2f}", f"{expected.jaccard * 100:.2f}",
                           f"{expected.hd95:.2f}", f"{expected.asd:.2f}",
                           f"{expected.hd95_mm:.2f}", f"{expected.asd_mm:.2f}"]
    assert "empty prediction" in next(line for line in lines if line.startswith("case_b"))
    assert lines[-1].startswith("mean") and f"{expected.dice * 50:.2f}" in lines[-1]
    no_mm = evaluate_cases([("c", prediction, reference, None)]).format_table()
    assert "mm" not in no_mm.splitlines()[0]


# ---------------------------------------------------------------- errors and layering

def test_mismatched_shapes_name_the_case():
    with pytest.raises(MetricsInputError, match="case 'la_007'.*shape"):
        evaluate_case(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), case_id="la_007")


def test_probabilities_and_bad_spacing_are_refused():
    with pytest.raises(MetricsInputError, match="non-integer"):
        evaluate_case(np.full((4, 4, 4), 0.7), np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(MetricsInputError, match="spacing"):
        evaluate_case(_cube(), _cube(), spacing=(1.0, 0.0, 1.0))
    with pytest.raises(MetricsInputError, match="spacing"):
        hd95(_cube(), _cube(), spacing=(1.0, 1.0))


def test_the_package_does_not_import_medpy():
    code = "import sys, napari_semiseg.engine.metrics; print('medpy' in sys.modules, 'torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------- real data

def test_real_la_label_against_medpy(shared_data):
    h5py = pytest.importorskip("h5py")
    files = sorted((shared_data / "LA" / "2018LA_Seg_Training Set").glob("*/mri_norm2.h5"))
    if not files:
        pytest.skip("no LA volumes")
    with h5py.File(files[0], "r") as handle:
        reference = np.ascontiguousarray(np.asarray(handle["label"]).transpose(2, 1, 0)) > 0  # (x,y,z) → (z,y,x)
    prediction = ndimage.binary_dilation(np.roll(reference, (1, -2, 3), axis=(0, 1, 2)))
    spacing = (0.625, 0.625, 0.625)
    case = evaluate_case(prediction, reference, spacing)
    assert case.hd95 == pytest.approx(medpy.hd95(prediction, reference), **TOLERANCE)
    assert case.asd_mm == pytest.approx(medpy.asd(prediction, reference, spacing), **TOLERANCE)
    assert case.dice == pytest.approx(medpy.dc(prediction, reference), **TOLERANCE)


def test_real_hippocampus_labels_two_classes_against_medpy(shared_data):
    sitk = pytest.importorskip("SimpleITK")
    files = sorted((shared_data / "hippocampus" / "labelsTr").glob("hippocampus_*.nii.gz"))[:2]
    if len(files) < 2:
        pytest.skip("no hippocampus labels")
    image = sitk.ReadImage(str(files[0]))
    reference = sitk.GetArrayFromImage(image).astype(np.uint8)          # (z, y, x)
    spacing = tuple(reversed(image.GetSpacing()))                       # (x, y, z) → (z, y, x)
    prediction = np.roll(reference, 1, axis=1)
    case = evaluate_case(prediction, reference, spacing)
    assert [m.label for m in case.per_class] == [1, 2]
    for metrics in case.per_class:
        p, r = prediction == metrics.label, reference == metrics.label
        assert metrics.hd95_mm == pytest.approx(medpy.hd95(p, r, spacing), **TOLERANCE)
        assert metrics.asd == pytest.approx(medpy.asd(p, r), **TOLERANCE)
        assert metrics.jaccard == pytest.approx(medpy.jc(p, r), **TOLERANCE)
