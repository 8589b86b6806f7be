"""The V-Net of the left-atrium papers (UA-MT, SS-Net, CrossMatch, SSL4MIS), docs/METHODS.md §1.3.

Written from its description, not from any repository. It differs from MONAI's ``VNet``
(5×5×5 convolutions, residual stages, PReLU, 45.6 M parameters): here every convolution is
3×3×3 with BatchNorm and ReLU, and with 16 base filters the network has about 9.4 M
parameters.

Shape of the network (f = base filters, channels per resolution f, 2f, 4f, 8f, 16f)::

    encoder  stage convs 1, 2, 3, 3, 3 at full, 1/2, 1/4, 1/8, 1/16 resolution;
             between stages a k=2 s=2 conv + norm + ReLU doubles the channels
             bottleneck (1/16) -> Dropout3d
    decoder  k=2 s=2 transposed conv + norm + ReLU halves the channels, add the skip,
             stage convs 3, 3, 2, 1 at 1/8, 1/4, 1/2, full resolution
             last feature (f channels, full resolution) -> Dropout3d -> 1×1×1 conv to K classes
"""

from __future__ import annotations

from torch import Tensor, nn

from ..cards import NetworkSpec
from ._base import SegmentationNetwork
from ._blocks import conv_norm_relu, conv_stage, optional_dropout, upsampling

ENCODER_STAGES = (1, 2, 3, 3, 3)
DECODER_STAGES = (3, 3, 2, 1)


class VNetEncoder(nn.Module):
    """Image (B, C, Z, Y, X) -> [x1 (f, full), x2 (2f, 1/2), x3 (4f, 1/4), x4 (8f, 1/8), x5 (16f, 1/16)]."""

    def __init__(self, in_channels: int, base_filters: int, normalization: str, dropout: nn.Module):
        super().__init__()
        widths = [base_filters * 2 ** level for level in range(len(ENCODER_STAGES))]
        self.stages = nn.ModuleList()
        self.downsamplings = nn.ModuleList()
        previous = in_channels
        for level, (n_convs, width) in enumerate(zip(ENCODER_STAGES, widths)):
            if level > 0:
                self.downsamplings.append(conv_norm_relu(previous, width, normalization, kernel_size=2, stride=2))
                previous = width
            self.stages.append(conv_stage(n_convs, previous, width, normalization))
            previous = width
        self.bottleneck_dropout = dropout

    def forward(self, x: Tensor) -> list[Tensor]:
        features = [self.stages[0](x)]
        for down, stage in zip(self.downsamplings, self.stages[1:]):
            features.append(stage(down(features[-1])))
        features[-1] = self.bottleneck_dropout(features[-1])
        return features


class VNetDecoder(nn.Module):
    """[x1 … x5] -> (logits (B, K, Z, Y, X), last feature (B, f, Z, Y, X) after its dropout)."""

    def __init__(self, base_filters: int, num_classes: int, normalization: str, dropout: nn.Module):
        super().__init__()
        widths = [base_filters * 2 ** level for level in range(len(ENCODER_STAGES))]
        self.upsamplings = nn.ModuleList()
        self.stages = nn.ModuleList()
        for n_convs, width, deeper in zip(DECODER_STAGES, reversed(widths[:-1]), reversed(widths[1:])):
            self.upsamplings.append(upsampling(deeper, width, normalization))
            self.stages.append(conv_stage(n_convs, width, width, normalization))
        self.feature_dropout = dropout
        self.out_conv = nn.Conv3d(base_filters, num_classes, kernel_size=1)

    def forward(self, features: list[Tensor], dropout: bool = True) -> tuple[Tensor, Tensor]:
        *skips, x = features
        for up, stage, skip in zip(self.upsamplings, self.stages, reversed(skips)):
            x = stage(up(x) + skip)
        if dropout:
            x = self.feature_dropout(x)
        return self.out_conv(x), x


class VNet(SegmentationNetwork):
    """The LA papers' V-Net; input sizes must be multiples of 16.

    Args:
        spec: ``name: vnet``; ``in_channels``, ``num_classes``, ``base_filters`` (16 in the
            papers), ``normalization``, ``dropout`` / ``dropout_rate`` (the papers'
            ``has_dropout``, p = 0.5) are honoured. ``levels`` must be 5 or unset.
        second_decoder: add a ``student_decoder`` of the same shape on the same encoder.
    """

    def __init__(self, spec: NetworkSpec, second_decoder: bool = False):
        super().__init__(in_channels=spec.in_channels, num_classes=spec.num_classes,
                         feature_channels=spec.base_filters, input_multiple=2 ** (len(ENCODER_STAGES) - 1))

        def make_decoder() -> VNetDecoder:
            return VNetDecoder(spec.base_filters, spec.num_classes, spec.normalization,
                               optional_dropout(spec.dropout, spec.dropout_rate))

        encoder = VNetEncoder(spec.in_channels, spec.base_filters, spec.normalization,
                              optional_dropout(spec.dropout, spec.dropout_rate))
        self._attach(encoder, make_decoder, second_decoder)
