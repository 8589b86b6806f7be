"""Each benchmark script's core runs on toy sizes and writes its CSV (no timing is asserted).

A fake LA folder of ten tiny ``mri_norm2.h5`` volumes (the benchmark's (x, y, z) layout, a
bright ball labelled) stands in for ``../shared/data/LA``; cards are the shipped ones, with a
16³ patch for the iteration cost and the CPU settings' training runs. The GUI responsiveness
benchmark needs a napari window and is exercised by running it (``python -m
benchmarks.responsiveness``), not here.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root holds benchmarks/

from benchmarks import (_finetune_report, finetune_gain, finetune_targets, inference_speed,  # noqa: E402
                        iteration_cost, memory, pseudo_throughput, quality_la)
from benchmarks._common import RESULTS_ENV, read_la_case  # noqa: E402
from napari_semiseg.engine.cards import load_card  # noqa: E402
from napari_semiseg.engine.training import read_events  # noqa: E402
from napari_semiseg.project import Project  # noqa: E402

CASES = [f"CASE{index:02d}" for index in range(10)]


def _write_fake_la(root: Path, cases: list[str]) -> None:
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in (36, 40, 24)], indexing="ij"))
    for case in cases:
        label = ((grid / 0.6) ** 2).sum(0) < 1
        image = (rng.normal(0, 1, label.shape) + 2.5 * label).astype(np.float32)
        (root / "2018LA_Seg_Training Set" / case).mkdir(parents=True)
        with h5py.File(root / "2018LA_Seg_Training Set" / case / "mri_norm2.h5", "w") as handle:
            handle["image"], handle["label"] = image, label.astype(np.uint8)
    (root / "train.list").write_text("\n".join(cases) + "\n")


@pytest.fixture
def fake_la(tmp_path, monkeypatch):
    """``<tmp>/data/LA`` with train.list and ten 36×40×24 (x, y, z) volumes; results in ``<tmp>/results``."""
    _write_fake_la(tmp_path / "data" / "LA", CASES)
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "results"))
    return tmp_path


@pytest.fixture
def small_patch(tmp_path, monkeypatch) -> Path:
    """The CPU settings' card, cpu-small, with a 16³ patch: these tests check how a benchmark
    wires its runs, not what a 32×48×48 patch learns, and a 16³ step or window costs a fraction."""
    card = tmp_path / "cpu-small-16.yaml"
    card.write_text(json.dumps({**load_card("cpu-small").to_dict(), "patch_size": [16, 16, 16]}))  # JSON is YAML
    for settings in (quality_la.SETTINGS, finetune_gain.SETTINGS):
        monkeypatch.setitem(settings, "cpu", {**settings["cpu"], "card": str(card)})
    return card


def _rows(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_iteration_cost_times_every_method_on_the_trainers_batches(fake_la):
    card = dataclasses.replace(load_card("cpu-small"), patch_size=(16, 16, 16))
    iteration_cost.run(card, ["supervised", "crossmatch", "plc-kd"], repeats=1, warmup=0)
    rows = _rows(fake_la / "results" / "iteration_cost" / "iteration_cost.csv")
    assert [r["method"] for r in rows] == ["supervised", iteration_cost.FULL_BATCH, "crossmatch", "plc-kd"]
    assert float(rows[0]["ratio_to_supervised"]) == 1.0
    assert all(float(r["ms_per_iteration"]) > 0 for r in rows)


def test_quality_la_trains_evaluates_per_case_and_plots(fake_la, small_patch):
    summary = quality_la.run(fake_la / "data", labeled=(1,), methods=("supervised",), upper_bound=False,
                             iterations=2, validate_every=2)
    out = fake_la / "results" / "quality_la" / "cpu"
    per_case = _rows(out / "per_case.csv")
    assert [r["case"] for r in per_case] == CASES[-8:], "evaluated on the validation split by default"
    assert 0.0 <= float(per_case[0]["dice"]) <= 1.0
    assert summary[0]["method"] == "supervised" and summary[0]["iterations"] == 2
    assert (out / "validation_dice.png").stat().st_size > 0
    assert quality_la.validation_curve(out / "N1" / "supervised")[-1][0] == 2
    dice_row = f"| supervised | {100 * summary[0]['dice']:.1f} |"
    assert dice_row in (out / "summary.md").read_text(), "the Dice-by-N table the README quotes"


def test_quality_la_plc_kd_distils_from_a_teacher_project_of_training_cases_only(fake_la, small_patch):
    summary = quality_la.run(fake_la / "data", labeled=(1,), methods=("plc-kd",), upper_bound=False,
                             iterations=2, validate_every=2)
    out = fake_la / "results" / "quality_la" / "cpu"
    assert [r["method"] for r in summary] == ["plc-kd"] and np.isfinite(summary[0]["dice"])
    assert quality_la.validation_curve(out / "N1" / "supervised"), "the same-N supervised teacher was trained"
    train_cases, validation = CASES[:2], set(CASES[-8:])
    with Project.open(out / "N1" / "plc-kd" / quality_la.TEACHER_PROJECT) as project:
        assert project.case_ids("labelled") == ["CASE00"] and project.case_ids("unlabelled") == ["CASE01"]
        assert project.latest_label("CASE00", kinds="gold") is not None
        assert project.latest_label("CASE01", kinds="gold") is None
        soft_cases = {soft.case_id for soft in project.soft_labels()}
        teacher = project.model(project.soft_labels()[0].model_id)
        image, _, spacing = read_la_case(fake_la / "data" / "LA" / "2018LA_Seg_Training Set" / "CASE01" /
                                         "mri_norm2.h5", downsample=2)
        volume = project.load_image("CASE01")
    assert soft_cases == set(train_cases) and not soft_cases & validation
    assert teacher.method == "supervised" and Path(teacher.config["output_dir"]).resolve() == (out / "N1" / "supervised").resolve()
    np.testing.assert_array_equal(volume.array, image)  # the trainer's grid, voxel for voxel
    assert np.allclose(volume.spacing, spacing)
    start = next(e for e in read_events(out / "N1" / "plc-kd" / "events.jsonl") if e["event"] == "start")
    targets = {t["case_id"]: t for t in start["method_params"]["targets"]}
    assert set(targets) == set(train_cases), "the student distilled from exactly the training cases"
    assert targets["CASE00"]["gold_label_id"] is not None and targets["CASE01"]["gold_label_id"] is None


def test_quality_la_atso_starts_from_the_supervised_run_and_spends_the_budget(tmp_path, monkeypatch, small_patch):
    cases = [f"CASE{index:02d}" for index in range(13)]  # 1 labelled, 4 reference (two folds), 8 validation
    _write_fake_la(tmp_path / "data" / "LA", cases)
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "results"))
    summary = quality_la.run(tmp_path / "data", labeled=(1,), methods=("supervised", "atso"), upper_bound=False,
                             iterations=5, validate_every=1)
    out = tmp_path / "results" / "quality_la" / "cpu"
    atso_row = summary[1]
    assert atso_row["method"] == "atso" and np.isfinite(atso_row["dice"])
    assert atso_row["iterations"] == 5, "two generations of two students and the final model, one step each"
    assert len(quality_la.validation_curve(out / "N1" / "atso")) >= 5, "a validation point per training"
    with Project.open(out / "N1" / "atso" / "project") as project:
        assert project.case_ids("validation") == cases[-8:], "selection on the validation split"
        m0 = next(m for m in project.models() if m.method == "supervised" and m.parent_id is None)
        final = project.active_model()
        assert Path(m0.config["output_dir"]).resolve() == (out / "N1" / "supervised").resolve()
        assert final.parent_id == m0.id, "the final model is fine-tuned from M0"
        pseudo_cases = {c for c in cases[1:5] if project.latest_label(c, kinds="pseudo") is not None}
    assert pseudo_cases == set(cases[1:5]), "every reference case was pseudo-labelled"


def test_finetune_gain_starts_every_run_from_m0_with_one_schedule_and_reports_the_gain(fake_la, small_patch):
    """N = 1 of 2 training cases, one seed: M0, then the control and PLC-KD from its weights."""
    (fake_la / "data" / "LA" / "other.list").write_text("CASE00\nCASE01\n")
    summary = finetune_gain.run(fake_la / "data", labeled=(1,), methods=("plc-kd",), seeds=1,
                                m0_iterations=2, iterations=2, validate_every=2,
                                eval_list=str(fake_la / "data" / "LA" / "other.list"))
    out = fake_la / "results" / "finetune_gain" / "cpu"
    recipe = ("optimizer", "lr", "schedule", "weight_decay", "iterations", "batch_labeled", "validate_every")
    runs = out / "N1" / "seed1337"
    control = json.loads((runs / "control" / "config.json").read_text())
    for name in ("control", "plc-kd"):
        config = json.loads((runs / name / "config.json").read_text())
        assert Path(config["init_from"]).resolve() == quality_la.best_model_file(runs / "m0").resolve()
        assert [config[k] for k in recipe] == [control[k] for k in recipe], "the control's schedule"
        assert config["seed"] == 1337
    with Project.open(out / "N1" / "seed1337" / "plc-kd" / finetune_gain.TEACHER_PROJECT) as project:
        teacher = project.model(project.soft_labels()[0].model_id)
        assert {soft.case_id for soft in project.soft_labels()} == set(CASES[:2]), "training cases only"
    assert Path(teacher.config["output_dir"]).resolve() == (out / "N1" / "seed1337" / "m0").resolve()
    rows = {(r["split"], r["run"]): r for r in summary}
    assert set(rows) == {(split, run) for split in ("validation", "other.list")
                         for run in ("m0", "control", "plc-kd")}
    assert all(r["seeds"] == 1 and 0.0 <= r["dice_mean"] <= 1.0 for r in summary)
    per_run = {(r["split"], r["run"]): float(r["dice"]) for r in _rows(out / "per_run.csv")}
    gain = 100 * (per_run["validation", "plc-kd"] - per_run["validation", "control"])
    assert rows["validation", "plc-kd"]["gain_vs_control_pts"] == pytest.approx(gain, abs=1e-6)
    assert np.isnan(rows["validation", "control"]["gain_vs_control_pts"]) and np.isnan(rows["validation", "m0"]["gain_vs_control_pts"])
    assert {r["case"] for r in _rows(out / "per_case.csv") if r["split"] == "other.list"} == {"CASE00", "CASE01"}
    text = (out / "summary.md").read_text()
    m0_cell = f"{100 * rows['validation', 'm0']['dice_mean']:.1f} ± {100 * rows['validation', 'm0']['dice_std']:.1f}"
    assert f"| m0 | {m0_cell} |" in text, "the Dice table the README quotes"
    assert (out / "validation_dice.png").stat().st_size > 0
    losses = _rows(out / "losses.csv")
    assert {r["run"] for r in losses} == {"m0", "control", "plc-kd"} and all(float(r["total"]) >= 0 for r in losses)
    shares = {r["run"]: r for r in _rows(out / "loss_shares.csv")}
    distilled = [r for r in losses if r["run"] == "plc-kd"]
    expected = np.mean([float(r["total"]) - float(r["supervised"]) for r in distilled])
    assert float(shares["plc-kd"]["unsupervised_part"]) == pytest.approx(expected, rel=1e-6), "its KD term, weighted"
    assert "Loss terms during fine-tuning" in text
    # Seeds run side by side are reported together from their gathered rows, nothing retrained.
    (out / "summary.csv").unlink()
    finetune_gain.main(["--shared-data", str(fake_la / "data"), "--report-only"])
    again = {(r["split"], r["run"]): float(r["dice_mean"]) for r in _rows(out / "summary.csv")}
    assert again == pytest.approx({key: row["dice_mean"] for key, row in rows.items()}, abs=1e-6)



def test_finetune_targets_measures_the_teacher_beside_the_deployed_student_at_the_last_step(fake_la, small_patch):
    """What the unlabelled targets are worth: Mean Teacher's EMA teacher validated beside its student,
    from the run's last checkpoint, with the numbers the trainer logged at its last validation."""
    finetune_gain.run(fake_la / "data", labeled=(1,), methods=("mean-teacher",), seeds=1, m0_iterations=2,
                      iterations=2, validate_every=2)
    out = fake_la / "results" / "finetune_gain" / "cpu"
    table = finetune_targets.run(fake_la / "data")
    rows = {(r["run"], r["network"]): float(r["dice"]) for r in _rows(out / "targets.csv")}
    assert set(rows) == {("control", "deployed"), ("mean-teacher", "deployed"), ("mean-teacher", "teacher")}
    events = read_events(out / "N1" / "seed1337" / "mean-teacher" / "events.jsonl")
    last = [e for e in events if e["event"] == "validation"][-1]
    assert rows["mean-teacher", "deployed"] == pytest.approx(last["dice"], abs=1e-9)
    assert rows["mean-teacher", "teacher"] == pytest.approx(last["branch_dice"]["teacher"], abs=1e-9)
    lead = 100 * (rows["mean-teacher", "teacher"] - rows["mean-teacher", "deployed"])
    assert next(r for r in table if r["run"] == "mean-teacher")["teacher − deployed (pts)"] == f"{lead:+.1f} ± 0.0"
    assert "| mean-teacher | 1 |" in (out / "targets.md").read_text()

def test_full_resolution_la_cases_reach_la_vnet_as_stored_in_the_trainer_and_in_teacher_projects(fake_la):
    """At full resolution (the GPU settings) the trainer's loader and the PLC-KD/ATSO projects
    keep ``zscored``, so la-vnet's zscore-once feeds both the stored h5 values, as the papers do."""
    from benchmarks._plc_teacher import add_la_cases
    from napari_semiseg.engine.inference import prepare_input
    from napari_semiseg.engine.training import prepare_case
    card = load_card("la-vnet")
    cases = _la_cases(fake_la)[:2]
    stored = read_la_case(cases[0][1])[0]
    from_loader = prepare_case(quality_la.source(cases[0], 1, True), card).image[0]
    np.testing.assert_array_equal(from_loader, stored)
    with Project.create(fake_la / "teacher") as project:
        add_la_cases(project, cases, 1, 1)
        volume = project.load_image(cases[0][0])
        assert project.latest_label(cases[0][0], kinds="gold") is not None
        assert project.latest_label(cases[1][0], kinds="gold") is None
    np.testing.assert_array_equal(prepare_input(volume, card.preprocessing).image, stored)


def _la_cases(root: Path) -> list[tuple[str, Path]]:
    return [(case, root / "data" / "LA" / "2018LA_Seg_Training Set" / case / "mri_norm2.h5") for case in CASES]


def test_finetune_gain_fine_tunes_with_the_recipe_the_product_plans(tmp_path):
    """What the benchmark measures is what the Fine-tune panel and ``semiseg train --init-from``
    run: the same optimiser, schedule and hyperparameters for a K-step fine-tune from M0."""
    from napari_panel_support import build_project, register_model
    from napari_semiseg.workflows.train import TrainRequest, plan_training
    setting = finetune_gain.SETTINGS["cpu"]
    with Project.open(build_project(tmp_path / "project")) as project:
        parent = register_model(project, tmp_path, card=load_card(setting["card"]), activate=False)
        for method in ("ua-mt", "mean-teacher", "dual-branch-kd", "supervised"):
            planned = plan_training(project, TrainRequest(method=method, iterations=150, start_from=parent.id)).config
            measured = finetune_gain.run_config(tmp_path / method, method, setting, iterations=150, validate_every=50,
                                                seed=1337, device="cpu", cached=1, init_from=parent.checkpoint_path)
            for field in ("optimizer", "lr", "schedule", "poly_power", "poly_horizon", "weight_decay", "iterations",
                          "batch_labeled", "batch_unlabeled"):
                assert getattr(measured, field) == getattr(planned, field), (method, field)
            assert measured.method_params == planned.method_params, method


def test_finetune_gain_pairs_each_methods_gain_with_the_control_of_its_seed():
    per_run = [{"split": "validation", "N": 8, "seed": seed, "run": run, "dice": dice, "train_s": 1.0}
               for seed, dice_by_run in ((1, {"m0": 0.50, "control": 0.52, "ua-mt": 0.56}),
                                         (2, {"m0": 0.40, "control": 0.46, "ua-mt": 0.47}),
                                         (3, {"m0": 0.45, "control": 0.49, "ua-mt": 0.49}))
               for run, dice in dice_by_run.items()]
    rows = {r["run"]: r for r in _finetune_report.summarise(per_run)}
    # gains 4, 1, 0 points: mean 5/3, sample std sqrt(((7/3)² + (2/3)² + (5/3)²) / 2) = sqrt(13/3)
    assert rows["ua-mt"]["gain_vs_control_pts"] == pytest.approx(5 / 3)
    assert rows["ua-mt"]["gain_std_pts"] == pytest.approx((13 / 3) ** 0.5)
    assert rows["ua-mt"]["seeds_above_control"] == 2
    assert rows["control"]["dice_mean"] == pytest.approx(0.49) and rows["control"]["dice_std"] == pytest.approx(0.03)
    assert np.isnan(rows["m0"]["gain_vs_control_pts"])
    table = _finetune_report.dice_table(list(rows.values()), "validation")
    assert table[2] == {"run": "ua-mt", "N=8": "50.7 ± 4.7 (+1.7 ± 2.1)"}


def test_finetune_gain_keeps_the_rows_of_an_earlier_n_for_one_table(tmp_path):
    """N = 8 then N = 4 as two commands: the second call keeps the first one's N = 8 rows."""
    from benchmarks._common import write_csv
    rows = [{"N": n, "seed": 1337, "run": run, "split": "validation", "cases": 8, "iterations": 150,
             "train_s": 12.5, "dice": dice, "jaccard": 0.4, "hd95_vox": float("nan"), "asd_vox": 3.0}
            for n, run, dice in ((8, "m0", 0.5), (8, "control", 0.52), (8, "ua-mt", 0.55), (4, "m0", 0.4))]
    path = write_csv(tmp_path / "per_run.csv", rows)
    kept = _finetune_report.earlier_rows(path, labeled=[4])
    assert [(r["N"], r["run"]) for r in kept] == [(8, "m0"), (8, "control"), (8, "ua-mt")]
    assert kept[2]["dice"] == 0.55 and kept[2]["seed"] == 1337 and np.isnan(kept[0]["hd95_vox"])
    gains = {r["run"]: r["gain_vs_control_pts"] for r in _finetune_report.summarise(kept)}
    assert gains["ua-mt"] == pytest.approx(3.0)
    assert _finetune_report.earlier_rows(tmp_path / "absent.csv", labeled=[4]) == []


def test_inference_speed_compares_both_grids(fake_la):
    rows = inference_speed.run(fake_la / "data", cases=1, train_iterations=1, overlaps=(0.25, 0.5))
    assert inference_speed.paper_stride((80, 112, 112)) == (4, 18, 18)
    assert [(r["case"], r["overlap"]) for r in rows] == [("CASE02", 0.25), ("CASE02", 0.5), ("ALL", 0.25),
                                                         ("ALL", 0.5)]
    assert rows[0]["dense_windows"] >= rows[1]["ours_windows"] >= rows[0]["ours_windows"]
    assert (fake_la / "results" / "inference_speed" / "inference_speed.csv").is_file()


def test_memory_reports_the_peak_rss_of_a_child(fake_la):
    rows = memory.run(("cpu-small",), train_cards=(), shape=(40, 64, 64))
    assert [r["measure"] for r in rows] == ["idle", "inference"]
    assert rows[1]["peak_rss_gb"] > rows[0]["peak_rss_gb"] > 0.01
    assert rows[1]["status"] == "complete"
    assert len(_rows(fake_la / "results" / "memory" / "memory.csv")) == 2


def test_pseudo_throughput_labels_the_volumes_in_a_project(fake_la):
    rows = pseudo_throughput.run(fake_la / "data", volumes=1)
    assert rows[-1]["volumes"] == 1 and rows[-1]["volumes_per_minute"] > 0
    assert (fake_la / "results" / "pseudo_throughput" / "pseudo_throughput.csv").is_file()
