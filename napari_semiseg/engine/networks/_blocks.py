"""Small building blocks shared by the networks: normalisation and conv stages.

All blocks work on 5-D tensors (batch, channels, z, y, x) and keep the spatial size unless
their name says they resample.
"""

from __future__ import annotations

from torch import nn

from ..cards import NORMALIZATIONS


def normalization_layer(kind: str, channels: int) -> nn.Module:
    """The normalisation a card asks for, over ``channels`` feature maps.

    ``"instancenorm"`` is affine so that it has the same learnable scale/shift as BatchNorm;
    ``"none"`` gives an identity (the convolutions then keep their bias, which matters).
    """
    if kind == "batchnorm":
        return nn.BatchNorm3d(channels)
    if kind == "instancenorm":
        return nn.InstanceNorm3d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalization {kind!r}; expected one of {NORMALIZATIONS}")


def conv_norm_relu(in_channels: int, out_channels: int, normalization: str, *,
                   kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv3d (same padding for odd kernels, none for the k=2 s=2 resampling) + norm + ReLU."""
    padding = kernel_size // 2 if kernel_size % 2 else 0
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, padding=padding),
        normalization_layer(normalization, out_channels),
        nn.ReLU(inplace=True),
    )


def conv_stage(n_convs: int, in_channels: int, out_channels: int, normalization: str) -> nn.Sequential:
    """``n_convs`` 3×3×3 conv+norm+ReLU; the first maps in→out channels, the rest out→out."""
    layers = [conv_norm_relu(in_channels if i == 0 else out_channels, out_channels, normalization)
              for i in range(n_convs)]
    return nn.Sequential(*layers)


def upsampling(in_channels: int, out_channels: int, normalization: str) -> nn.Sequential:
    """Transposed conv k=2 s=2 (doubles z, y and x) + norm + ReLU."""
    return nn.Sequential(
        nn.ConvTranspose3d(in_channels, out_channels, kernel_size=2, stride=2),
        normalization_layer(normalization, out_channels),
        nn.ReLU(inplace=True),
    )


def optional_dropout(enabled: bool, rate: float) -> nn.Module:
    """Dropout3d (whole feature maps) when the card enables dropout, else an identity.

    Dropout3d rather than voxel dropout: it is what the LA papers use, and MC sampling over
    whole channels gives smoother uncertainty maps.
    """
    return nn.Dropout3d(p=rate) if enabled and rate > 0 else nn.Identity()
