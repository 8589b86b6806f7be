"""A model predicts the way its method was published: SS-Net keeps the largest component."""

from napari_semiseg.engine.methods import with_method_postprocessing
from napari_semiseg.engine.cards import load_card


def test_ss_net_models_keep_the_largest_component_by_default():
    card = load_card("cpu-small")
    assert card.inference.largest_component is False
    assert with_method_postprocessing(card, "ss-net", {}).inference.largest_component is True


def test_a_recorded_choice_beats_the_method_default():
    card = load_card("cpu-small")
    config = {"method_params": {"largest_component": False}}
    assert with_method_postprocessing(card, "ss-net", config).inference.largest_component is False


def test_other_methods_and_unknown_ones_keep_the_card():
    card = load_card("cpu-small")
    assert with_method_postprocessing(card, "supervised", {}) == card
    assert with_method_postprocessing(card, "crossmatch", {}) == card
    assert with_method_postprocessing(card, "no-such-method", {}) == card
