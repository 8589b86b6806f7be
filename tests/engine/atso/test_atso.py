"""ATSO and its baselines run end to end on a tiny real project (h5 volumes, SQLite, the real
trainer and pseudo-labelling): checked from what the project recorded, not from the plan."""

from __future__ import annotations

import json

import pytest

from napari_semiseg.cli import main
from napari_semiseg.engine.atso import AtsoProgress, run_atso, split_folds, state_dict_sha256
from napari_semiseg.engine.training import load_model_weights
from napari_semiseg.project import Project
from atso_support import REFERENCE, make_project, numpy_dice, quick_config, reference_of


def _weights_sha(model) -> str:
    return state_dict_sha256(load_model_weights(model.checkpoint_path)[0])


def _by_name(project: Project, run_id: int) -> dict:
    """{key: ModelVersion} of the models an ATSO run registered ("G1/student-1", "final"...)."""
    found = {}
    for model in project.models():
        atso = model.metrics.get("atso")
        if atso and atso["run_id"] == run_id:
            found[atso["key"]] = model
    return found


def _pseudo_cases(project: Project, model) -> set[str]:
    """The cases a model was trained on through a pseudo-label, read from its training config."""
    cases = set()
    for spec in model.config["data"]["labeled"]:
        if spec["label_version"] is not None and project.label_version(spec["label_version"]).kind == "pseudo":
            cases.add(spec["case_id"])
    return cases


def _cases_seen(project: Project, model) -> set[str]:
    """Pseudo-labelled cases a model's weights were fine-tuned on, itself and its ancestors."""
    seen = _pseudo_cases(project, model)
    return seen if model.parent_id is None else seen | _cases_seen(project, project.model(model.parent_id))


@pytest.fixture(scope="module")
def atso(tmp_path_factory):
    """One ATSO run, 2 generations: (project folder, result, progress reports)."""
    folder = tmp_path_factory.mktemp("atso")
    reports: list[AtsoProgress] = []
    with make_project(folder) as project:
        result = run_atso(project, quick_config("atso"), progress=reports.append)
    return folder / "project", result, reports


@pytest.fixture
def project(atso):
    with Project.open(atso[0]) as project:
        yield project


# -- the ATSO invariant ----------------------------------------------------------------------------

def test_no_model_ever_pseudo_labels_a_case_it_was_fine_tuned_on(atso, project):
    _, result, _ = atso
    pseudo = [v for case in REFERENCE for v in project.label_versions(case) if v.kind == "pseudo"]
    # 3 labellings of the 4 reference cases: by M0, by generation 1's and generation 2's students
    assert len(pseudo) == 12
    teachers = {v.model_id for v in pseudo}
    assert len(teachers) == 5
    for version in pseudo:
        teacher = project.model(version.model_id)
        assert version.case_id not in _cases_seen(project, teacher), (version, teacher.name)
    # and the students were fine-tuned on pseudo-labels (the check above is not vacuous)
    students = [m for key, m in _by_name(project, result.report.run_id).items() if "student" in key]
    assert len(students) == 4 and all(len(_pseudo_cases(project, m)) == 2 for m in students)


def test_each_fold_is_labelled_by_the_student_of_the_other_fold(atso, project):
    _, result, _ = atso
    models = _by_name(project, result.report.run_id)
    folds = project.run(result.report.run_id).config["folds"]
    for generation in (1, 2):
        one, two = models[f"G{generation}/student-1"], models[f"G{generation}/student-2"]
        assert _pseudo_cases(project, one) == set(folds["R1"])
        assert _pseudo_cases(project, two) == set(folds["R2"])
    labelled_by = {(r.generation, r.fold): r.teacher_model_id for r in result.report.labellings}
    for generation in (1, 2):
        assert labelled_by[(generation, "R1")] == models[f"G{generation}/student-2"].id
        assert labelled_by[(generation, "R2")] == models[f"G{generation}/student-1"].id
    # the students of generation 2 learn from the labels of generation 1's cross-fold students
    g2 = models["G2/student-1"]
    teachers = {project.label_version(s["label_version"]).model_id for s in g2.config["data"]["labeled"]
                if project.label_version(s["label_version"]).kind == "pseudo"}
    assert teachers == {models["G1/student-2"].id}


def test_folds_are_fixed_seeded_and_recorded(atso, project):
    _, result, _ = atso
    recorded = project.run(result.report.run_id).config["folds"]
    assert recorded == split_folds(REFERENCE, seed=0).to_dict() == result.report.folds
    assert sorted(recorded["R1"] + recorded["R2"]) == sorted(REFERENCE)
    assert not set(recorded["R1"]) & set(recorded["R2"])


# -- where the students start ----------------------------------------------------------------------

def test_every_student_and_the_final_model_start_from_m0s_weights(atso, project):
    _, result, _ = atso
    models = _by_name(project, result.report.run_id)
    m0 = _weights_sha(models["G0/M0"])
    for key in ("G1/student-1", "G1/student-2", "G2/student-1", "G2/student-2", "final"):
        record = result.report.model(key)
        assert record.start_weights_sha256 == m0, key
        assert models[key].parent_id == models["G0/M0"].id
        assert _weights_sha(models[key]) != m0, f"{key} did not train"   # so the hashes tell weights apart
    # generation 2 does not continue from generation 1
    assert result.report.model("G2/student-1").start_weights_sha256 != _weights_sha(models["G1/student-1"])


def test_the_final_model_learns_from_all_last_pseudo_labels_and_is_active(atso, project):
    _, result, _ = atso
    models = _by_name(project, result.report.run_id)
    final = models["final"]
    assert final.active and result.final_model_id == final.id
    assert [m.name for m in project.models() if m.active] == [final.name]
    last = {r.fold: r for r in result.report.labellings if r.generation == 2}
    expected = {c.label_version_id for r in last.values() for c in r.cases}
    used = {s["label_version"] for s in final.config["data"]["labeled"]}
    assert expected <= used and _pseudo_cases(project, final) == set(REFERENCE)


# -- the report --------------------------------------------------------------------------------------

def test_the_report_has_the_pseudo_label_dice_of_every_reference_case_per_generation(atso, project):
    folder, result, _ = atso
    report = result.report
    on_disk = json.loads(result.report_path.read_text())
    assert report.labelled_generations == [0, 1, 2]
    for generation in (0, 1, 2):
        dice = report.generation_dice(generation)
        assert set(dice) == set(REFERENCE)
        stored = {c.case_id: c.label_version_id for r in report.labellings if r.generation == generation
                  for c in r.cases}
        for case_id, value in dice.items():
            expected = numpy_dice(project.load_label(stored[case_id]), reference_of(case_id))
            assert value == pytest.approx(expected, abs=1e-9)
        assert on_disk["pseudo_label_dice"][f"G{generation}"]["per_case"] == pytest.approx(dice)
    assert project.run(report.run_id).status == "completed"
    table = report.dice_table()
    assert all(f"G{g}" in table for g in (0, 1, 2)) and "pseudo-label Dice %" in table
    assert len(report.per_case_table().splitlines()) == 2 + len(REFERENCE)


def test_progress_names_generation_step_and_model_and_ends_at_one(atso):
    _, _, reports = atso
    steps = {(r.generation, r.step, r.model) for r in reports}
    assert (0, "train", "G0/M0") in steps and (0, "pseudo-label", "G0/M0") in steps
    assert (2, "pseudo-label", "G2/student-1") in steps and (3, "train", "final") in steps
    fractions = [r.fraction for r in reports]
    assert all(0.0 <= f <= 1.0 for f in fractions) and reports[-1].step == "done" and fractions[-1] == 1.0
    assert max(fractions[:len(fractions) // 2]) < 0.75


def test_models_lists_the_lineage(atso, capsys):
    folder, result, _ = atso
    assert main(["models", str(folder)]) == 0
    out = capsys.readouterr().out
    run = result.report.run_id
    for key in ("G0-M0", "G1-student-1", "G1-student-2", "G2-student-1", "G2-student-2", "final"):
        assert f"atso{run}-{key}" in out


# -- the baselines -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def baselines(atso, tmp_path_factory):
    """STSO and self-learning on fresh copies of the project, both from the ATSO run's M0."""
    folder, result, _ = atso
    with Project.open(folder) as source:
        m0 = _by_name(source, result.report.run_id)["G0/M0"]
    runs = {}
    for mode in ("stso", "self-learning"):
        with make_project(tmp_path_factory.mktemp(mode)) as project:
            given = project.register_model(m0.card, m0.checkpoint_path, method=m0.method, config=m0.config,
                                           metrics={}, activate=False, name="given-M0")
            runs[mode] = (project.root, given.id, run_atso(project, quick_config(mode, m0_model_id=given.id)))
    return runs


def test_stso_reinitialises_every_student_from_m0(baselines):
    root, m0_id, result = baselines["stso"]
    with Project.open(root) as project:
        models = _by_name(project, result.report.run_id)
        m0_sha = _weights_sha(project.model(m0_id))
        g1, g2 = models["G1/student"], models["G2/student"]
        assert result.report.model("G1/student").start_weights_sha256 == m0_sha
        assert result.report.model("G2/student").start_weights_sha256 == m0_sha
        assert g1.parent_id == g2.parent_id == m0_id
        # no split: one student learns from every reference case, labelled by the previous model
        assert _pseudo_cases(project, g1) == _pseudo_cases(project, g2) == set(REFERENCE)
        assert set(result.report.model("G2/student").teachers) == {g1.id}
        assert g2.active and result.final_model_id == g2.id and "final" not in models


def test_self_learning_continues_from_its_own_weights(baselines):
    root, m0_id, result = baselines["self-learning"]
    with Project.open(root) as project:
        models = _by_name(project, result.report.run_id)
        g1, g2 = models["G1/student"], models["G2/student"]
        start = result.report.model("G2/student").start_weights_sha256
        assert start == _weights_sha(g1) != _weights_sha(project.model(m0_id))
        assert g2.parent_id == g1.id and g1.parent_id == m0_id
        # and it learns from its own labels: the teacher of its pseudo-labels is where it started
        assert set(result.report.model("G2/student").teachers) == {g1.id}
        assert g2.active
        assert set(result.report.generation_dice(2)) == set(REFERENCE)


# -- stopping ------------------------------------------------------------------------------------------

def test_a_stopped_run_keeps_what_it_made_and_says_where_it_stopped(atso, tmp_path):
    folder, result, _ = atso
    with Project.open(folder) as source:
        m0 = _by_name(source, result.report.run_id)["G0/M0"]
    stored: list[str] = []

    def note(report: AtsoProgress) -> None:
        if type(report.event).__name__ == "PseudoLabelCase":
            stored.append(report.event.case_id)

    with make_project(tmp_path) as project:
        given = project.register_model(m0.card, m0.checkpoint_path, method=m0.method, config=m0.config,
                                       metrics={}, activate=True, name="given-M0")
        stopped = run_atso(project, quick_config("atso", m0_model_id=given.id), progress=note,
                           should_stop=lambda: bool(stored))
        assert stopped.status == "stopped" and stopped.final_model_id is None
        assert len(stored) == 1
        assert [v.case_id for c in REFERENCE for v in project.label_versions(c) if v.kind == "pseudo"] == stored
        assert [m.id for m in project.models()] == [given.id] and project.active_model().id == given.id
        assert project.run(stopped.report.run_id).status == "stopped"
        on_disk = json.loads(stopped.report_path.read_text())
        assert on_disk["status"] == "stopped" and on_disk["labellings"][0]["cancelled"] is True
