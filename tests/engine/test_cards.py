"""Model cards: the shipped ones carry the papers' protocols and build their networks; a broken
card is reported with its file and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from napari_semiseg.engine.cards import CardError, card_from_dict, load_card, shipped_card_names
from napari_semiseg.engine.networks import build_network, count_parameters

SHIPPED = ["cpu-small", "la-vnet", "pancreas-vnet"]


def test_the_three_cards_ship():
    assert shipped_card_names() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_card_loads_by_name_and_builds_its_network(name):
    card = load_card(name)
    assert card.name == name and Path(card.source).name == f"{name}.yaml"
    assert card.description and card.modality in {"MR", "CT"}
    net = build_network(card.network)
    assert (net.in_channels, net.num_classes) == (card.network.in_channels, card.network.num_classes)
    assert all(size % net.input_multiple == 0 for size in card.patch_size)
    if card.network.name == "vnet":
        assert 9.3e6 <= count_parameters(net) <= 9.5e6


def test_cpu_small_takes_a_training_step_at_its_own_patch():
    card = load_card("cpu-small")
    net = build_network(card.network)
    batch = torch.randn(1, card.network.in_channels, *card.patch_size)
    logits = net(batch)
    assert logits.shape == (batch.shape[0], card.network.num_classes, *card.patch_size)
    logits.mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_la_card_follows_the_la_papers_protocol():
    card = load_card("la-vnet")
    net = card.network
    assert (net.name, net.base_filters, net.normalization, net.dropout, net.dropout_rate, net.num_classes) == (
        "vnet", 16, "batchnorm", True, 0.5, 2)
    assert card.patch_size == (80, 112, 112)  # the papers' 112×112×80 in (x, y, z)
    assert card.preprocessing.intensity == "zscore-once"  # mri_norm2.h5 as stored (test_fidelity)
    assert (card.inference.stride, card.inference.blending) == ((4, 18, 18), "constant")
    t = card.training
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay) == ("sgd", 0.01, 0.9, 1e-4)
    assert (t.schedule, t.step_size, t.gamma, t.iterations) == ("step", 2500, 0.1, 6000)
    assert (t.batch_labeled, t.batch_unlabeled, t.validate_every) == (2, 2, 200)


def test_pancreas_card_follows_the_mcnet_protocol():
    card = load_card("pancreas-vnet")
    assert card.modality == "CT" and card.network.name == "vnet"
    assert card.patch_size == (96, 96, 96) and card.inference.stride == (16, 16, 16)
    pre = card.preprocessing
    assert (pre.target_spacing, pre.intensity, pre.window) == ((1.0, 1.0, 1.0), "window", (-125, 275))
    assert card.training.iterations == 15000


def test_cpu_small_card_is_small():
    card = load_card("cpu-small")
    assert (card.network.name, card.network.base_filters, card.network.resolved_levels) == ("unet-small", 8, 3)
    # 0.25 left square seams in the demo's LA prediction (issue 17); the papers' cards keep their stride.
    assert card.inference.stride is None and card.inference.overlap == 0.5
    t = card.training
    assert (t.iterations, t.validate_every, t.checkpoint_every) == (300, 50, 50)
    assert count_parameters(build_network(card.network)) < 200_000


def test_a_card_survives_a_round_trip_through_plain_data():
    card = load_card("pancreas-vnet")
    again = card_from_dict(yaml.safe_load(yaml.safe_dump(card.to_dict())), where="round trip")
    assert again == card


def test_a_card_is_found_by_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(Path(load_card("cpu-small").source).read_text().replace("name: cpu-small", "name: mine"))
    assert load_card(path).name == "mine"
    assert load_card(str(path)).source == str(path)


def test_an_unknown_card_name_lists_the_shipped_ones():
    with pytest.raises(CardError, match="no-such-card: no such model card.*cpu-small, la-vnet, pancreas-vnet"):
        load_card("no-such-card")


def _broken(tmp_path, edit) -> Path:
    data = yaml.safe_load(Path(load_card("cpu-small").source).read_text())
    edit(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("edit, problem", [
    (lambda d: d["network"].update(filters=8), r"network: unknown key\(s\) \['filters'\]"),
    (lambda d: d.update(pach_size=[32, 48, 48]), r"unknown key\(s\) \['pach_size'\]"),
    (lambda d: d["training"].update(learning_rate=0.1), r"training: unknown key\(s\) \['learning_rate'\]"),
    (lambda d: d.update(patch_size=[48, 48]), r"patch_size: must be a list of 3 integers, got \[48, 48\]"),
    (lambda d: d.update(patch_size=[32, "big", 48]), "patch_size: must be a list of 3 integers, got 'big' in it"),
    (lambda d: d.update(patch_size=[32, 48, 50]), r"multiples of 4 for network 'unet-small'"),
    (lambda d: (d["network"].update(name="vnet"), d["network"].pop("levels"), d.update(patch_size=[32, 48, 40])),
     r"\[32, 48, 40\] must be multiples of 16 for network 'vnet'"),
    (lambda d: d["network"].update(name="vnet"), "the V-Net has exactly 5"),
    (lambda d: d["network"].update(normalization="groupnorm"), "network.normalization must be one of"),
    (lambda d: d["inference"].update(overlap=1.5), r"inference.overlap must be in \[0, 1\)"),
    (lambda d: d["inference"].update(stride=[64, 8, 8]), "inference.stride must be three steps"),
    (lambda d: d["preprocessing"].update(intensity="window", window=[275, -125]), "low < high"),
    (lambda d: d["training"].update(optimizer="adam"), "training.optimizer must be one of"),
    (lambda d: d["training"].update(lr="fast"), "training.lr: must be a number, got 'fast'"),
    (lambda d: d.pop("network"), r"missing key\(s\) \['network'\]"),
])
def test_a_malformed_card_names_its_file_and_the_problem(tmp_path, edit, problem):
    path = _broken(tmp_path, edit)
    with pytest.raises(CardError, match=problem) as caught:
        load_card(path)
    assert str(caught.value).startswith(str(path))


def test_a_card_that_is_not_yaml_names_its_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(CardError, match="not valid YAML") as caught:
        load_card(path)
    assert str(path) in str(caught.value)
