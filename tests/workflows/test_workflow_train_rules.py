"""The training workflow's rules, as ``semiseg train`` reaches them (no training: plans only).

- Choosing a method applies its published recipe: ``--card la-vnet --method crossmatch`` trains
  with CrossMatch's AdamW 1e-3 and poly decay over its 14000 steps, not the card's SGD 0.01 for
  6000; what the user sets wins, and only a shortened run rescales the ramps.
- A fine-tune (``--init-from``) keeps the card's recipe whatever the method: the recipe the
  fine-tune-gain benchmark measured, control and methods alike.
- Validation cases are the ones a person marks: nothing is carved out of the labelled cases
  unless asked, so every labelled case trains and the Fine-tune panel's pools agree.
"""

from __future__ import annotations

import pytest

from napari_semiseg._napari._finetune_job import CasePools
from napari_semiseg.cli._main import build_parser
from napari_semiseg.cli._train import train_request
from napari_semiseg.engine.methods import get_method
from napari_semiseg.project import Project
from napari_semiseg.samples import SampleProjectSpec, build_sample_project
from napari_semiseg.workflows.train import TrainRequest, plan_training
from napari_panel_support import LABELLED, build_project


def cli_plan(project, *arguments):
    """The plan ``semiseg train PROJECT ARGUMENTS`` would run (nothing is trained)."""
    args = build_parser().parse_args(["train", str(project.root), *map(str, arguments)])
    return plan_training(project, train_request(args))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = build_project(tmp_path_factory.mktemp("rules") / "project")
    with Project.open(folder) as opened:
        yield opened


def test_choosing_crossmatch_applies_its_published_recipe(project):
    config = cli_plan(project, "--card", "la-vnet", "--method", "crossmatch").config
    published = get_method("crossmatch").recommended_training()
    assert (config.optimizer, config.lr, config.schedule, config.poly_horizon, config.iterations) == (
        "adamw", 1e-3, "poly", 17000, 14000) == tuple(published[key] for key in (
            "optimizer", "lr", "schedule", "poly_horizon", "iterations"))
    # The full-length run keeps the ramps as published.
    assert config.method_params["threshold_ramp"] == get_method("crossmatch").default_params()["threshold_ramp"]


def test_the_users_settings_win_and_a_shorter_run_rescales_the_ramps(project):
    plan = cli_plan(project, "--card", "la-vnet", "--method", "crossmatch", "--iterations", 1400,
                    "--param", "lr=0.005", "--param", "tau=0.8")
    config = plan.config
    assert (config.optimizer, config.lr, config.iterations) == ("adamw", 0.005, 1400)
    default_ramp = get_method("crossmatch").default_params()["threshold_ramp"]
    assert config.method_params["threshold_ramp"] == round(default_ramp * 1400 / 14000)
    assert config.method_params["tau"] == 0.8
    assert plan.overrides == {"lr": 0.005, "iterations": 1400, "method_params": {"tau": 0.8}}


def test_the_cards_own_method_keeps_the_cards_recipe(project):
    config = cli_plan(project, "--card", "la-vnet").config
    assert (config.method, config.optimizer, config.lr, config.iterations) == ("supervised", "sgd", 0.01, 6000)


def test_no_labelled_case_is_carved_out_for_validation_unless_asked(tmp_path):
    spec = SampleProjectSpec(shipped=(), phantoms=5, phantom_gold=5, phantom_shape=(24, 48, 48))
    with build_sample_project(tmp_path / "five", spec) as five:
        labelled = tuple(five.case_ids())
        plan = cli_plan(five, "--card", "cpu-small")
        assert (plan.choice.labeled, plan.choice.validation) == (list(labelled), [])
        assert plan.config.data.validation == ()
        assert CasePools.from_project(five).labelled == labelled, "the Fine-tune panel offers the same cases"
        carved = cli_plan(five, "--card", "cpu-small", "--validation-count", 1).choice
        assert (carved.labeled, carved.validation) == (list(labelled[:4]), [labelled[4]])
        # A case a clinician marks as validation is never trained on, labelled or not.
        five.set_split(labelled[4], "validation")
        marked = cli_plan(five, "--card", "cpu-small").choice
        assert (marked.labeled, marked.validation) == (list(labelled[:4]), [labelled[4]])


def test_a_validation_case_without_a_reference_is_neither_trained_on_nor_validated(project):
    unlabelled = project.case_ids(split="unlabelled")[0]
    project.set_split(unlabelled, "validation")
    try:
        choice = plan_training(project, TrainRequest(card="cpu-small", method="mean-teacher", iterations=10)).choice
    finally:
        project.set_split(unlabelled, "unlabelled")
    assert unlabelled not in choice.validation + choice.unlabeled + choice.labeled
    assert choice.labeled == list(LABELLED)


def test_a_fine_tune_from_a_model_weighs_the_consistency_fully_from_its_first_step(project, tmp_path):
    """From a trained model (the product's loop) the consistency-weight ramp is dropped; from a
    fresh network it is fitted to the run (docs/METHODS.md §8)."""
    from napari_panel_support import register_model
    from napari_semiseg.engine.cards import load_card
    parent = register_model(project, tmp_path, card=load_card("cpu-small"), activate=False)
    fresh = cli_plan(project, "--card", "cpu-small", "--method", "mean-teacher", "--iterations", 150)
    warm = cli_plan(project, "--method", "mean-teacher", "--iterations", 150, "--init-from", parent.id)
    published = get_method("mean-teacher").default_params()["consistency_rampup"]
    assert fresh.config.method_params.get("consistency_rampup", published) == published == 40, "from scratch"
    assert warm.config.method_params["consistency_rampup"] == 0
    assert warm.config.method_params["rampup_period"] == fresh.config.method_params["rampup_period"] == 4
    assert warm.overrides == {"iterations": 150}, "the dropped ramp is the recipe's, not the user's"


def test_a_fine_tune_keeps_the_cards_recipe_whatever_the_method(project, tmp_path):
    """UA-MT's published recipe is 6000 SGD steps at 0.01 from random weights; a fine-tune from a
    cpu-small model runs the card's AdamW 1e-3 with poly decay over the card's 300 steps, as the
    supervised control of ``benchmarks/finetune_gain`` does."""
    from napari_panel_support import register_model
    from napari_semiseg.engine.cards import load_card
    card = load_card("cpu-small").training
    parent = register_model(project, tmp_path, card=load_card("cpu-small"), activate=False)
    fresh = cli_plan(project, "--card", "cpu-small", "--method", "ua-mt").config
    assert (fresh.optimizer, fresh.lr, fresh.schedule, fresh.iterations) == ("sgd", 0.01, "step", 6000)
    for method in ("ua-mt", "crossmatch", "supervised"):
        plan = cli_plan(project, "--method", method, "--init-from", parent.id)
        config = plan.config
        assert (config.optimizer, config.lr, config.schedule, config.iterations) == (
            card.optimizer, card.lr, card.schedule, card.iterations) == ("adamw", 1e-3, "poly", 300), method
        assert plan.record["recipe"] == "fine-tune" and plan.overrides == {}
