"""A light 3-D U-Net for CPUs: few filters, few levels, same hooks as the V-Net.

Shape (f = base filters, L = levels, widths f, 2f, …, f·2^(L-1))::

    encoder  level 0: two 3×3×3 conv+norm+ReLU; level i > 0: 2×2×2 max-pool, two convs
             bottleneck (deepest level) -> Dropout3d
    decoder  k=2 s=2 transposed conv + norm + ReLU, concatenate the skip, two convs, per level
             last feature (f channels, full resolution) -> Dropout3d -> 1×1×1 conv to K classes

Max-pooling (no parameters) and concatenated skips keep it cheap and easy to train from a few
hundred iterations; input sizes must be multiples of 2^(L-1).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..cards import NetworkSpec
from ._base import SegmentationNetwork
from ._blocks import conv_stage, optional_dropout, upsampling

CONVS_PER_STAGE = 2


class UNetSmallEncoder(nn.Module):
    """Image (B, C, Z, Y, X) -> one feature map per level, full resolution first."""

    def __init__(self, in_channels: int, widths: list[int], normalization: str, dropout: nn.Module):
        super().__init__()
        self.pool = nn.MaxPool3d(kernel_size=2, stride=2)
        self.stages = nn.ModuleList()
        previous = in_channels
        for width in widths:
            self.stages.append(conv_stage(CONVS_PER_STAGE, previous, width, normalization))
            previous = width
        self.bottleneck_dropout = dropout

    def forward(self, x: Tensor) -> list[Tensor]:
        features = [self.stages[0](x)]
        for stage in self.stages[1:]:
            features.append(stage(self.pool(features[-1])))
        features[-1] = self.bottleneck_dropout(features[-1])
        return features


class UNetSmallDecoder(nn.Module):
    """Level features -> (logits (B, K, Z, Y, X), last feature (B, f, Z, Y, X) after its dropout)."""

    def __init__(self, widths: list[int], num_classes: int, normalization: str, dropout: nn.Module):
        super().__init__()
        self.upsamplings = nn.ModuleList()
        self.stages = nn.ModuleList()
        for width, deeper in zip(reversed(widths[:-1]), reversed(widths[1:])):
            self.upsamplings.append(upsampling(deeper, width, normalization))
            self.stages.append(conv_stage(CONVS_PER_STAGE, 2 * width, width, normalization))
        self.feature_dropout = dropout
        self.out_conv = nn.Conv3d(widths[0], num_classes, kernel_size=1)

    def forward(self, features: list[Tensor], dropout: bool = True) -> tuple[Tensor, Tensor]:
        *skips, x = features
        for up, stage, skip in zip(self.upsamplings, self.stages, reversed(skips)):
            x = stage(torch.cat([up(x), skip], dim=1))
        if dropout:
            x = self.feature_dropout(x)
        return self.out_conv(x), x


class UNetSmall(SegmentationNetwork):
    """A light 3-D U-Net (``name: unet-small``); input sizes must be multiples of 2^(levels-1).

    Args:
        spec: ``in_channels``, ``num_classes``, ``base_filters`` (8 on the cpu-small card),
            ``levels`` (default 3), ``normalization``, ``dropout`` / ``dropout_rate``.
        second_decoder: add a ``student_decoder`` of the same shape on the same encoder.
    """

    def __init__(self, spec: NetworkSpec, second_decoder: bool = False):
        levels = spec.resolved_levels
        widths = [spec.base_filters * 2 ** level for level in range(levels)]
        super().__init__(in_channels=spec.in_channels, num_classes=spec.num_classes,
                         feature_channels=spec.base_filters, input_multiple=2 ** (levels - 1))

        def make_decoder() -> UNetSmallDecoder:
            return UNetSmallDecoder(widths, spec.num_classes, spec.normalization,
                                    optional_dropout(spec.dropout, spec.dropout_rate))

        encoder = UNetSmallEncoder(spec.in_channels, widths, spec.normalization,
                                   optional_dropout(spec.dropout, spec.dropout_rate))
        self._attach(encoder, make_decoder, second_decoder)
