"""The trainer loop, in process, on the tiny synthetic task: learning, repeatability, exact
resumption, stopping, events, checkpoints, configuration and the errors a user meets."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_semiseg.engine.methods import (Method, MethodError, dice_and_cross_entropy, register_method,
                                           sigmoid_rampup)
from napari_semiseg.engine.training import (CHECKPOINT_FILE, EVENT_FIELDS, EVENTS_FILE, MODEL_FILE, STOP_FILE,
                                            CaseSource, TrainConfig, TrainingData, TrainingError, load_checkpoint,
                                            learning_rate, load_model, read_events, train)
from training_support import (array_data, assert_same_weights, box_case, tiny_card, tiny_config, weights,
                                   weights_differ)


# -- a semi-supervised method made only through the public plug-in interface -------------------

@dataclass
class EmaParams:
    ema_decay: float = 0.9
    consistency: float = 0.1
    noise: float = 0.1


@register_method
class EmaConsistency(Method):
    """Mean-Teacher-like: supervised loss + noisy teacher consistency on the unlabelled half.

    It exercises what issue 4's methods need: two networks, one trainable, the unlabelled
    stream, torch randomness inside the step, an EMA in ``after_step`` and an extra state.
    """

    name = "test-ema-consistency"
    Params = EmaParams
    trainable_networks = ("student",)
    deployed_network_name = "student"

    def build_networks(self, factory):
        student = factory(self.card.network)
        teacher = factory(self.card.network)
        teacher.load_state_dict(student.state_dict())
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.updates = 0
        return {"student": student, "teacher": teacher}

    def training_step(self, batch, step):
        logits = self.net("student")(batch.image)
        losses = dice_and_cross_entropy(logits[: batch.n_labeled], batch.label)
        noisy = batch.unlabeled_image + torch.randn_like(batch.unlabeled_image) * self.params.noise
        with torch.no_grad():
            target = torch.softmax(self.net("teacher")(noisy), dim=1)
        consistency = F.mse_loss(torch.softmax(logits[batch.n_labeled:], dim=1), target)
        weight = self.params.consistency * sigmoid_rampup(step.iteration, step.iterations)
        return {"supervised": losses["total"], "consistency": consistency,
                "total": losses["total"] + weight * consistency}

    def after_step(self, step):
        self.updates += 1
        with torch.no_grad():
            for t, s in zip(self.network("teacher").parameters(), self.network("student").parameters()):
                t.mul_(self.params.ema_decay).add_(s, alpha=1 - self.params.ema_decay)

    def extra_state(self):
        return {"updates": self.updates}

    def load_extra_state(self, state):
        self.updates = int(state["updates"])


class Payload:
    """An arbitrary object: unpickling it could run code, so loading must refuse it."""


def totals(result) -> list[float]:
    return [record["losses"]["total"] for record in result.history]


# -- learning ---------------------------------------------------------------------------------------

def test_a_short_run_lowers_the_loss_and_segments_the_validation_case(tmp_path):
    result = train(tiny_config(tmp_path / "run", iterations=20, validate_every=10), array_data())
    losses = totals(result)
    assert result.status == "finished" and result.iteration == 20 and len(losses) == 20
    assert np.mean(losses[-4:]) < 0.6 * np.mean(losses[:4])
    assert result.metrics["validation_dice"] > 0.5
    assert result.metrics["validation_iteration"] == 20
    assert (tmp_path / "run" / MODEL_FILE).is_file() and (tmp_path / "run" / CHECKPOINT_FILE).is_file()


def test_the_saved_model_predicts_like_the_trained_network(tmp_path):
    result = train(tiny_config(tmp_path / "run", iterations=3), array_data(n_validation=0))
    trained = result.method.deployed_network().eval()
    loaded = load_model(result.model)
    x = torch.randn(1, 1, *tiny_card().patch_size)
    with torch.no_grad():
        assert torch.equal(trained(x), loaded.network(x))
    assert loaded.card == tiny_card() and loaded.method == "supervised" and loaded.iteration == 3


# -- repeatability and exact resumption --------------------------------------------------------------

def test_the_same_seed_gives_the_same_weights_and_another_seed_does_not(tmp_path):
    runs = [train(tiny_config(tmp_path / name, iterations=4, seed=seed), array_data(n_validation=0))
            for name, seed in (("a", 3), ("b", 3), ("c", 4))]
    a, b, c = (weights(r.method.deployed_network()) for r in runs)
    assert_same_weights(a, b)
    assert totals(runs[0]) == totals(runs[1])
    assert weights_differ(a, c)


@pytest.mark.parametrize("method, optimizer, schedule", [
    ("supervised", "sgd", "step"),
    ("test-ema-consistency", "adamw", "poly"),
])
def test_stop_then_resume_equals_an_uninterrupted_run(tmp_path, method, optimizer, schedule):
    n = 4
    overrides = dict(iterations=2 * n, method=method, optimizer=optimizer, schedule=schedule, step_size=3,
                     lr=0.02, card=tiny_card(dropout=True), validate_every=3)
    data = array_data()
    whole = train(tiny_config(tmp_path / "whole", **overrides), data)

    seen = []
    first = train(tiny_config(tmp_path / "split", **overrides), data,
                  progress=lambda e: seen.append(e), should_stop=lambda: len(
                      [e for e in seen if e["event"] == "iteration"]) >= n)
    assert first.status == "stopped" and first.iteration == n
    assert seen[-1]["event"] == "stopped" and seen[-1]["iteration"] == n
    second = train(tiny_config(tmp_path / "split", resume_from=str(first.checkpoint), **overrides), data)

    assert second.status == "finished" and second.iteration == 2 * n
    assert totals(first) + totals(second) == totals(whole)
    for name in whole.method.networks:
        assert_same_weights(weights(whole.method.network(name)), weights(second.method.network(name)))
    assert second.metrics["validation_dice"] == whole.metrics["validation_dice"]
    if method == "test-ema-consistency":
        assert second.method.updates == whole.method.updates == 2 * n


def test_a_finished_run_can_be_extended_from_its_checkpoint(tmp_path):
    data = array_data(n_validation=0)
    whole = train(tiny_config(tmp_path / "whole", iterations=6), data)
    short = train(tiny_config(tmp_path / "short", iterations=3), data)
    longer = train(tiny_config(tmp_path / "short", iterations=6, resume_from=str(short.checkpoint)), data)
    assert_same_weights(weights(whole.method.deployed_network()), weights(longer.method.deployed_network()))


# -- stopping -------------------------------------------------------------------------------------------

def test_a_stop_file_stops_the_run_and_keeps_its_weights(tmp_path):
    run_dir = tmp_path / "run"

    def create_stop_file(event):
        if event["event"] == "iteration" and event["iteration"] == 3:
            (run_dir / STOP_FILE).touch()

    result = train(tiny_config(run_dir, iterations=50), array_data(), progress=create_stop_file)
    assert result.status == "stopped" and result.iteration == 3
    assert not (run_dir / STOP_FILE).exists()  # acknowledged: a resume here does not stop at once
    stopped = read_events(run_dir / EVENTS_FILE)[-1]
    assert stopped["event"] == "stopped" and stopped["reason"] == "stop file"
    kept = load_model(stopped["model"]).network
    assert_same_weights(weights(kept), weights(result.method.deployed_network()))
    assert load_checkpoint(stopped["checkpoint"])["iteration"] == 3


def test_a_stop_during_validation_is_honoured_and_keeps_the_weights(tmp_path):
    calls = {"n": 0}

    def stop_inside_validation():
        calls["n"] += 1
        # polled before steps 1 and 2 and before the first validation case; the next poll,
        # inside that case's sliding-window prediction, stops the run
        return calls["n"] > 3

    result = train(tiny_config(tmp_path / "run", iterations=20, validate_every=2), array_data(n_validation=2),
                   should_stop=stop_inside_validation)
    assert result.status == "stopped" and result.iteration == 2
    assert result.metrics["validation_dice"] is None  # the interrupted pass is not reported
    assert (tmp_path / "run" / MODEL_FILE).is_file()


def test_fine_tuning_starts_from_the_parent_model(tmp_path):
    parent = train(tiny_config(tmp_path / "parent", iterations=3), array_data(n_validation=0))
    child = train(tiny_config(tmp_path / "child", iterations=5, init_from=str(parent.model)),
                  array_data(n_validation=0), should_stop=lambda: True)
    assert child.iteration == 0
    assert_same_weights(weights(child.method.deployed_network()), weights(parent.method.deployed_network()))


# -- events ------------------------------------------------------------------------------------------------

def test_the_events_file_is_json_lines_with_the_documented_fields(tmp_path):
    received = []
    train(tiny_config(tmp_path / "run", iterations=6, validate_every=3, checkpoint_every=2), array_data(),
          progress=received.append)
    lines = (tmp_path / "run" / EVENTS_FILE).read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert events == received
    for event in events:
        assert isinstance(event["time"], float)
        missing = set(EVENT_FIELDS[event["event"]]) - set(event)
        assert not missing, f"{event['event']} lacks {missing}"
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "finished"
    assert [e["iteration"] for e in events if e["event"] == "iteration"] == [1, 2, 3, 4, 5, 6]
    assert [e["iteration"] for e in events if e["event"] == "validation"] == [3, 6]
    assert [e["iteration"] for e in events if e["event"] == "checkpoint"] == [2, 4]
    steps = [e for e in events if e["event"] == "iteration"]
    assert all(set(e["losses"]) == {"ce", "dice", "total"} and e["lr"] == 0.01 for e in steps)
    assert steps[-1]["eta_s"] == 0.0 and steps[0]["eta_s"] > 0
    validation = next(e for e in events if e["event"] == "validation")
    assert set(validation["per_case"]) == {"val0"} and 0.0 <= validation["dice"] <= 1.0


def test_an_error_is_reported_as_an_event_with_a_readable_message(tmp_path):
    image, label = box_case(1)
    bad = TrainingData([CaseSource.from_arrays("too-many-classes", image, label * 3)])
    with pytest.raises(TrainingError, match="too-many-classes.*classes 0..3.*2 classes"):
        train(tiny_config(tmp_path / "run", iterations=2), bad)
    last = read_events(tmp_path / "run" / EVENTS_FILE)[-1]
    assert last["event"] == "error" and "too-many-classes" in last["message"]
    assert last["error_type"] == "TrainingError"


# -- checkpoints ---------------------------------------------------------------------------------------------

def test_checkpoints_load_with_weights_only_and_unsafe_files_are_refused(tmp_path):
    result = train(tiny_config(tmp_path / "run", iterations=2), array_data(n_validation=0))
    for path in (result.checkpoint, result.model):
        payload = torch.load(path, weights_only=True)
        assert payload["iteration"] == 2
    checkpoint = load_checkpoint(result.checkpoint)
    assert TrainConfig.from_dict(checkpoint["config"]).iterations == 2
    assert isinstance(checkpoint["rng"][0]["torch"], torch.Tensor)

    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": "napari-semiseg-checkpoint", "object": Payload()}, unsafe)
    with pytest.raises(TrainingError, match="refused to load"):
        load_checkpoint(unsafe)
    with pytest.raises(TrainingError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_resuming_with_another_method_is_refused(tmp_path):
    first = train(tiny_config(tmp_path / "run", iterations=1), array_data(n_validation=0))
    with pytest.raises(TrainingError, match="trained with method 'supervised'"):
        train(tiny_config(tmp_path / "run", iterations=2, method="test-ema-consistency",
                          resume_from=str(first.checkpoint)), array_data(n_validation=0))


# -- configuration ---------------------------------------------------------------------------------------------

def test_the_config_round_trips_through_json_and_takes_the_card_recipe(tmp_path):
    card = tiny_card()
    config = TrainConfig.from_card(card, tmp_path, iterations=5, method_params={"dice": "binary"})
    assert config.optimizer == card.training.optimizer and config.lr == card.training.lr
    again = TrainConfig.from_dict(json.loads(config.to_json()))
    assert again == config
    assert TrainConfig.read(config.write()) == config
    with pytest.raises(TrainingError, match="unknown key"):
        TrainConfig.from_dict({**config.to_dict(), "learning_rate": 1})
    with pytest.raises(TrainingError, match="schedule must be one of"):
        TrainConfig.from_card(card, tmp_path, schedule="cosine")


def test_the_run_s_recipe_is_the_card_s_training_spec_and_files_keep_the_flat_form(tmp_path):
    """One source of truth: a run's recipe is a ``TrainingSpec`` (a card's ``training``) with the
    run's changes; the JSON keeps the recipe at the top level, so files of earlier releases read."""
    import dataclasses
    card = tiny_card()
    card = card.replace(training=dataclasses.replace(card.training, schedule="poly", poly_power=2.0))
    config = TrainConfig.from_card(card, tmp_path, lr=0.5, device="cpu")
    assert config.recipe == dataclasses.replace(card.training, lr=0.5)
    assert learning_rate(config, config.iterations // 2) == pytest.approx(0.5 * 0.5 ** 2.0), "the card's poly_power"
    flat = config.to_dict()
    assert "recipe" not in flat and flat["lr"] == 0.5 and flat["poly_power"] == 2.0
    flat.pop("poly_power")  # a file from before poly_power was a card field
    assert TrainConfig.from_dict(flat).recipe.poly_power == 0.9
    resumed = config.replace(iterations=7, resume_from="x.pt")
    assert (resumed.iterations, resumed.resume_from, resumed.lr) == (7, "x.pt", 0.5)
    with pytest.raises(TrainingError, match="iterations must be ≥ 1"):
        config.replace(iterations=0)


def test_unknown_methods_and_hyperparameters_are_named(tmp_path):
    with pytest.raises(MethodError, match="unknown training method 'nope'.*supervised"):
        train(tiny_config(tmp_path / "a", method="nope"), array_data())
    with pytest.raises(MethodError, match="unknown hyperparameter.*'dice_wieght'"):
        train(tiny_config(tmp_path / "b", method_params={"dice_wieght": 1.0}), array_data())


def test_a_semi_supervised_method_without_unlabelled_cases_is_refused(tmp_path):
    with pytest.raises(TrainingError, match="unlabelled cases too"):
        train(tiny_config(tmp_path / "run", method="test-ema-consistency"), array_data(n_unlabeled=0))
