"""The networks built from cards: the LA papers' V-Net, the small U-Net, and the hooks the
semi-supervised methods rely on (encode/decode, features, second decoder, MC dropout)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from napari_semiseg.engine.cards import CardError, NetworkSpec
from napari_semiseg.engine.networks import (NetworkError, UNetSmall, VNet, build_network, count_parameters,
                                            dropout_layers, enable_mc_dropout)

LA_VNET = NetworkSpec(name="vnet", base_filters=16, normalization="batchnorm", dropout=True, dropout_rate=0.5)
#: Counted from the architecture of docs/METHODS.md §1.3. SS-Net's table says 9.44 M and CrossMatch's
#: Table (papers/crossmatch.txt) 9.443 M: their counter leaves out the 5,600 BatchNorm weights.
LA_VNET_PARAMETERS = 9_448_866
LA_VNET_BATCHNORM_PARAMETERS = 5_600

# Light stand-ins that exercise the same code paths at a fraction of the cost.
TINY_SPECS = {
    "vnet": NetworkSpec(name="vnet", base_filters=4),
    "unet-small": NetworkSpec(name="unet-small", base_filters=4, levels=3),
}


def tiny(name: str, **changes) -> nn.Module:
    torch.manual_seed(0)
    spec = TINY_SPECS[name]
    return build_network(dataclasses.replace(spec, **changes))


def image(batch: int = 1, channels: int = 1, shape=(16, 32, 32)) -> torch.Tensor:
    return torch.randn(batch, channels, *shape, generator=torch.Generator().manual_seed(1))


# -- the LA V-Net -----------------------------------------------------------------------------

def test_la_vnet_has_the_papers_parameter_count_and_3x3x3_convolutions():
    net = build_network(LA_VNET)
    assert isinstance(net, VNet)
    assert count_parameters(net) == LA_VNET_PARAMETERS
    assert 9.3e6 <= count_parameters(net) <= 9.5e6  # MONAI's VNet has 45.6 M
    batchnorm = sum(p.numel() for m in net.modules() if isinstance(m, nn.BatchNorm3d) for p in m.parameters())
    assert batchnorm == LA_VNET_BATCHNORM_PARAMETERS
    assert round((LA_VNET_PARAMETERS - batchnorm) / 1e6, 3) == 9.443
    kernels = {m.kernel_size for m in net.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))}
    assert kernels == {(3, 3, 3), (2, 2, 2), (1, 1, 1)}
    assert sum(isinstance(m, nn.BatchNorm3d) for m in net.modules()) > 0
    assert [m.p for m in dropout_layers(net)] == [0.5, 0.5]


def test_la_vnet_maps_an_image_to_class_logits_of_the_same_grid():
    net = build_network(LA_VNET).eval()
    x = image(shape=(16, 32, 32))
    with torch.no_grad():
        features = net.encode(x)
        logits, embedding = net.decode(features)
    assert [tuple(f.shape) for f in features] == [
        (1, 16, 16, 32, 32), (1, 32, 8, 16, 16), (1, 64, 4, 8, 8), (1, 128, 2, 4, 4), (1, 256, 1, 2, 2)]
    assert logits.shape == (1, 2, 16, 32, 32)
    assert embedding.shape == (1, 16, 16, 32, 32) and net.feature_channels == 16


def test_input_sizes_the_network_cannot_take_are_reported():
    net = tiny("vnet")
    with pytest.raises(NetworkError, match="multiples of 16.*\\(16, 32, 24\\)"):
        net(image(shape=(16, 32, 24)))
    with pytest.raises(NetworkError, match="1 image channel"):
        net(image(channels=2))


# -- the small U-Net ----------------------------------------------------------------------------

def test_unet_small_honours_channels_classes_and_levels():
    torch.manual_seed(0)
    net = build_network(NetworkSpec(name="unet-small", in_channels=2, num_classes=3, base_filters=6, levels=4,
                                    normalization="instancenorm"))
    assert isinstance(net, UNetSmall) and net.input_multiple == 8
    assert any(isinstance(m, nn.InstanceNorm3d) for m in net.modules())
    assert not any(isinstance(m, nn.BatchNorm3d) for m in net.modules())
    out = net.eval()(image(channels=2, shape=(8, 16, 24)))
    assert out.shape == (1, 3, 8, 16, 24)
    assert [f.shape[1] for f in net.encode(image(channels=2, shape=(8, 16, 24)))] == [6, 12, 24, 48]
    assert net.feature_channels == 6


def test_unknown_network_or_normalization_is_a_card_error():
    with pytest.raises(CardError, match="'resnet' is unknown.*unet-small, vnet"):
        build_network(NetworkSpec(name="resnet"))
    with pytest.raises(CardError, match="groupnorm"):
        build_network(NetworkSpec(name="unet-small", normalization="groupnorm"))


# -- the hooks ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["vnet", "unet-small"])
def test_decode_of_encode_and_forward_features_equal_forward_in_eval(name):
    net = tiny(name).eval()
    x = image(batch=2)
    with torch.no_grad():
        logits = net(x)
        decoded, feature = net.decode(net.encode(x))
        via_features, embedding = net.forward_features(x)
    assert logits.shape == (2, 2, 16, 32, 32)
    torch.testing.assert_close(decoded, logits)
    torch.testing.assert_close(via_features, logits)
    torch.testing.assert_close(embedding, feature)
    assert embedding.shape == (2, net.feature_channels, 16, 32, 32)
    # the embedding is what the out-conv reads: the logits are a 1×1×1 conv of it
    torch.testing.assert_close(net.decoder.out_conv(embedding), logits)


@pytest.mark.parametrize("name", ["vnet", "unet-small"])
def test_perturbed_encoder_features_are_decoded_in_one_stacked_pass(name):
    net = tiny(name).eval()
    x = image()

    def clean_and_zeroed(features):
        return [torch.cat([f, torch.zeros_like(f)]) for f in features]

    with torch.no_grad():
        out = net(x, perturb=clean_and_zeroed)
        torch.testing.assert_close(out[:1], net(x))
        assert not torch.allclose(out[1:], out[:1])


@pytest.mark.parametrize("name", ["vnet", "unet-small"])
def test_dropout_samples_in_training_and_mc_mode_only(name):
    net = tiny(name)
    x = image()
    with torch.no_grad():
        net.train()
        assert not torch.allclose(net(x), net(x))
        net.eval()
        torch.testing.assert_close(net(x), net(x))
        norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm3d)]
        running_before = [m.running_mean.clone() for m in norms]
        assert enable_mc_dropout(net) == 2
        samples = torch.stack([torch.softmax(net(x), 1) for _ in range(4)])
        assert samples.var(0).mean() > 0
        # MC dropout leaves the normalisation in eval mode: running statistics unchanged
        assert all(not m.training for m in norms)
        for m, before in zip(norms, running_before):
            torch.testing.assert_close(m.running_mean, before)
        net.eval()
        torch.testing.assert_close(net(x), net(x))


def test_decoder_dropout_can_be_switched_off_while_training():
    net = tiny("vnet").eval()
    with torch.no_grad():
        features = net.encode(image())
        net.train()  # batch statistics are deterministic; only dropout can make passes differ
        torch.testing.assert_close(net.decode(features, dropout=False)[0], net.decode(features, dropout=False)[0])
        assert not torch.allclose(net.decode(features)[0], net.decode(features)[0])


def test_a_network_without_dropout_refuses_mc_sampling():
    net = tiny("unet-small", dropout=False)
    assert dropout_layers(net) == []
    with pytest.raises(NetworkError, match="dropout: true"):
        enable_mc_dropout(net)


# -- the second decoder -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["vnet", "unet-small"])
def test_second_decoder_shares_the_encoder_and_has_its_own_weights(name):
    single = tiny(name)
    dual = tiny(name, second_decoder=True)
    assert not single.has_second_decoder and dual.has_second_decoder
    decoder_size = count_parameters(dual.decoder)
    assert count_parameters(dual) == count_parameters(single) + decoder_size

    teacher_params = {id(p) for p in dual.decoder.parameters()}
    student_params = {id(p) for p in dual.student_decoder.parameters()}
    assert not teacher_params & student_params
    assert not torch.equal(dual.decoder.out_conv.weight, dual.student_decoder.out_conv.weight)

    teacher, student = dual.forward_dual(image())
    assert teacher.shape == student.shape == (1, 2, 16, 32, 32)
    student.sum().backward()
    # the student's loss trains the one shared encoder and its own decoder, never the teacher's
    assert all(p.grad is not None for p in dual.encoder.parameters())
    assert all(p.grad is not None for p in dual.student_decoder.parameters())
    assert all(p.grad is None for p in dual.decoder.parameters())
    dual.zero_grad(set_to_none=True)
    teacher, _ = dual.forward_dual(image())
    teacher.sum().backward()
    assert all(p.grad is not None for p in dual.encoder.parameters())
    assert all(p.grad is None for p in dual.student_decoder.parameters())


def test_the_student_branch_deploys_as_a_single_decoder_network():
    dual = tiny("unet-small", second_decoder=True).eval()
    deployed = tiny("unet-small").eval()
    deployed.load_state_dict(dual.branch_state_dict("student"))
    x = image()
    with torch.no_grad():
        teacher, student = dual.forward_dual(x)
        torch.testing.assert_close(deployed(x), student)
        torch.testing.assert_close(dual(x), teacher)
    with pytest.raises(NetworkError, match="without a second decoder"):
        deployed.decode(deployed.encode(x), branch="student")


def test_second_decoder_from_the_card_spec():
    assert build_network(NetworkSpec(name="unet-small", base_filters=4, second_decoder=True)).has_second_decoder
    assert not build_network(NetworkSpec(name="unet-small", base_filters=4, second_decoder=True),
                             second_decoder=False).has_second_decoder
