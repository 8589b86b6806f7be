"""The parts of ATSO that need no training: folds, the schedule of each mode, configuration and
case choice (on a real, tiny project)."""

from __future__ import annotations

import dataclasses

import pytest

from napari_semiseg.engine.atso import (FINAL, M0, AtsoConfig, AtsoError, Generation, Labelling, Schedule,
                                        Training, check_asynchronous, choose_cases, make_schedule, split_folds)
from atso_support import LABELLED, REFERENCE, make_project, tiny_card


# -- folds ----------------------------------------------------------------------------------------

def test_folds_are_disjoint_halves_that_cover_the_reference_set():
    ids = [f"case{i:02d}" for i in range(9)]
    folds = split_folds(ids, seed=3)

    assert set(folds.first).isdisjoint(folds.second)
    assert set(folds.first) | set(folds.second) == set(ids)
    assert (len(folds.first), len(folds.second)) == (5, 4)
    assert all(folds.fold_of(c) == ("R1" if c in folds.first else "R2") for c in ids)


def test_folds_depend_on_the_seed_and_the_set_only():
    ids = [f"case{i:02d}" for i in range(20)]
    folds = split_folds(ids, seed=7)

    assert split_folds(list(reversed(ids)), seed=7) == folds          # order given does not matter
    assert split_folds(ids, seed=7).to_dict() == folds.to_dict()       # same seed: same record
    assert split_folds(ids, seed=8).first != folds.first               # another seed: another split


def test_folds_need_two_distinct_cases():
    with pytest.raises(AtsoError, match="at least two"):
        split_folds(["only"])
    with pytest.raises(AtsoError, match="more than once"):
        split_folds(["a", "b", "a"])


# -- schedules ------------------------------------------------------------------------------------

def _labellers(schedule: Schedule) -> dict[tuple[int, str], str]:
    return {(g.index, l.fold): l.teacher for g in schedule.generations for l in g.labellings}


def test_atso_schedule_labels_each_fold_with_the_student_of_the_other_fold():
    schedule = make_schedule("atso", 3)

    labellers = _labellers(schedule)
    assert labellers[(0, "R1")] == labellers[(0, "R2")] == M0
    for t in (1, 2, 3):
        assert labellers[(t, "R1")] == f"G{t}/student-2"
        assert labellers[(t, "R2")] == f"G{t}/student-1"
        assert schedule.training(f"G{t}/student-1").folds == ("R1",)
        assert schedule.training(f"G{t}/student-2").folds == ("R2",)
        assert schedule.training(f"G{t}/student-1").init == schedule.training(f"G{t}/student-2").init == M0
    assert schedule.final == Training(FINAL, 4, ("R1", "R2"), M0)
    assert schedule.final_model == FINAL
    check_asynchronous(schedule)


def test_baselines_do_not_split_and_differ_only_in_where_students_start():
    stso, self_learning = make_schedule("stso", 3), make_schedule("self-learning", 3)

    for schedule in (stso, self_learning):
        assert {l.fold for g in schedule.generations for l in g.labellings} == {"R"}
        assert schedule.final is None and schedule.final_model == "G3/student"
    assert [stso.training(f"G{t}/student").init for t in (1, 2, 3)] == [M0, M0, M0]
    assert [self_learning.training(f"G{t}/student").init for t in (1, 2, 3)] == [M0, "G1/student", "G2/student"]
    check_asynchronous(stso)  # not asynchronous: nothing to check


def test_the_invariant_check_catches_a_model_labelling_its_own_fold():
    good = make_schedule("atso", 2)
    generations = list(good.generations)
    swapped = tuple(Labelling(l.fold, l.teacher.replace("2", "X").replace("1", "2").replace("X", "1"))
                    if l.teacher != M0 else l for l in generations[1].labellings)
    generations[1] = Generation(1, generations[1].trainings, swapped)
    bad = dataclasses.replace(good, generations=tuple(generations))

    with pytest.raises(AtsoError, match="fine-tuned on"):
        check_asynchronous(bad)


def test_unknown_mode_and_zero_generations_are_refused():
    with pytest.raises(AtsoError, match="unknown mode"):
        make_schedule("mean-teacher", 2)
    with pytest.raises(AtsoError, match="generations"):
        make_schedule("atso", 0)


# -- configuration and cases ------------------------------------------------------------------------

def test_configuration_errors_name_every_bad_setting():
    config = AtsoConfig(tiny_card(), mode="atso", generations=0, labelled_share=1.5,
                        train_overrides={"init_from": "x.pt", "lr": 0.1})
    with pytest.raises(AtsoError) as caught:
        config.check()
    message = str(caught.value)
    assert "generations" in message and "labelled_share" in message and "init_from" in message
    assert "lr" not in message.split("train_overrides may not set")[1]


@pytest.fixture
def project(tmp_path):
    with make_project(tmp_path) as project:
        yield project


def test_cases_are_chosen_from_labels_and_splits(project):
    cases = choose_cases(project, AtsoConfig(tiny_card()))
    assert (cases.labelled, cases.reference, cases.validation) == (LABELLED, REFERENCE, ())

    project.set_split("c5", "validation")
    limited = choose_cases(project, AtsoConfig(tiny_card(), reference_limit=2))
    assert (limited.reference, limited.validation) == (("c2", "c3"), ("c5",))


def test_a_reference_case_with_a_gold_label_or_a_test_case_is_refused(project):
    with pytest.raises(AtsoError, match="'c0' has a gold or corrected label"):
        choose_cases(project, AtsoConfig(tiny_card(), labelled=("c1",), reference=("c0", "c2")))
    project.set_split("c3", "test")
    with pytest.raises(AtsoError, match="'c3' is in the test split"):
        choose_cases(project, AtsoConfig(tiny_card(), reference=("c2", "c3")))
    with pytest.raises(AtsoError, match="no case 'nope'"):
        choose_cases(project, AtsoConfig(tiny_card(), labelled=("nope",)))
