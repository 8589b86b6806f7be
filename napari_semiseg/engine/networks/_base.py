"""What every segmentation network offers the methods: one encoder, one or two decoders.

The semi-supervised methods need more than ``forward``:

- SS-Net reads the last decoder feature map (its embedding) next to the logits;
- CrossMatch perturbs the encoder's skip and bottleneck maps and decodes them again;
- the dual-branch KD method trains a second ("student") decoder on the same encoder;
- UA-MT and the uncertainty maps sample dropout at test time (MC dropout).

A network is therefore split into an ``encoder`` module, which maps the image to a list of
feature maps (skips, shallow to deep, then the bottleneck), and a ``decoder`` module, which maps
that list to ``(logits, last decoder feature)``. Everything else is built on those two.
"""

from __future__ import annotations

from typing import Callable, Sequence

from torch import Tensor, nn

from ...errors import SemisegError

BRANCHES = ("teacher", "student")
OUTPUTS = ("logits", "features", "dual")

FeaturePerturbation = Callable[[list[Tensor]], list[Tensor]]


class NetworkError(SemisegError):
    """A network cannot do what was asked (wrong input size, no dropout for MC, ...)."""


class SegmentationNetwork(nn.Module):
    """Base of the shipped networks: ``encoder`` + ``decoder`` (+ ``student_decoder``).

    Subclasses build the two modules and call ``_attach``. The encoder maps an image
    (B, C, Z, Y, X) to a list of feature maps, shallowest skip first, bottleneck last (after
    its dropout). A decoder maps such a list to ``(logits, feature)``: logits (B, K, Z, Y, X)
    and the last decoder feature map (B, ``feature_channels``, Z, Y, X) after its dropout.

    Attributes:
        in_channels: image channels C the network expects.
        num_classes: output classes K, background included.
        feature_channels: channels of the last decoder feature map (16 for the LA V-Net).
        input_multiple: Z, Y and X must each be a multiple of this (2 ** downsamplings).
        student_decoder: the second decoder, or None when built without one.
    """

    def __init__(self, *, in_channels: int, num_classes: int, feature_channels: int, input_multiple: int):
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.feature_channels = feature_channels
        self.input_multiple = input_multiple
        self.student_decoder: nn.Module | None = None

    def _attach(self, encoder: nn.Module, make_decoder: Callable[[], nn.Module], second_decoder: bool) -> None:
        self.encoder = encoder
        self.decoder = make_decoder()
        if second_decoder:
            self.student_decoder = make_decoder()

    @property
    def has_second_decoder(self) -> bool:
        return self.student_decoder is not None

    # -- the hooks the methods use ------------------------------------------------------

    def encode(self, x: Tensor) -> list[Tensor]:
        """Encoder feature maps of an image batch.

        Args:
            x: (B, C, Z, Y, X) float image, each of Z, Y, X a multiple of ``input_multiple``.

        Returns:
            The skips from full resolution down, then the bottleneck (after its dropout when
            the card enables dropout and the module is training). CrossMatch may perturb
            any of them before ``decode``; the list may also be stacked along the batch.
        """
        self._check_input(x)
        return list(self.encoder(x))

    def decode(self, features: Sequence[Tensor], dropout: bool = True,
               branch: str = "teacher") -> tuple[Tensor, Tensor]:
        """Logits and the last decoder feature map from encoder features.

        Args:
            features: what ``encode`` returned (possibly perturbed; same shapes per map).
            dropout: apply the dropout on the last decoder feature (it still follows
                train/eval mode); False switches it off even in training, as CrossMatch's
                perturbed decoder passes do.
            branch: ``"teacher"`` (the main decoder) or ``"student"`` (the second decoder).

        Returns:
            (logits (B, K, Z, Y, X), feature (B, feature_channels, Z, Y, X)).
        """
        logits, feature = self._decoder(branch)(list(features), dropout)
        # Under bf16 autocast the convolutions return bf16: losses, softmax and prototypes get
        # float32 (a no-op when the network runs in float32).
        return logits.float(), feature.float()

    def forward(self, x: Tensor, *, output: str = "logits", perturb: FeaturePerturbation | None = None,
                decoder_dropout: bool = True):
        """Segment an image batch.

        Everything goes through ``forward`` so that a DistributedDataParallel wrapper sees
        every use of the parameters: call the wrapper with ``output=`` / ``perturb=`` rather
        than ``forward_features`` on the inner module when training under DDP.

        Args:
            x: (B, C, Z, Y, X) image.
            output: ``"logits"``; ``"features"`` for (logits, last decoder feature);
                ``"dual"`` for (teacher logits, student logits) from one shared encoding.
            perturb: optional function applied to the encoder feature list before decoding
                (it may stack perturbed copies along the batch dimension).
            decoder_dropout: see ``decode``'s ``dropout``.

        Returns:
            Logits (B', K, Z, Y, X) (B' = B unless ``perturb`` changed the batch), or the tuple
            ``output`` names.
        """
        if output not in OUTPUTS:
            raise NetworkError(f"{type(self).__name__}: unknown output {output!r}; expected one of {OUTPUTS}")
        features = self.encode(x)
        if perturb is not None:
            features = perturb(features)
        if output == "dual":
            teacher, _ = self.decode(features, decoder_dropout, "teacher")
            student, _ = self.decode(features, decoder_dropout, "student")
            return teacher, student
        logits, feature = self.decode(features, decoder_dropout)
        return (logits, feature) if output == "features" else logits

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(logits, last decoder feature after its dropout): SS-Net's (prediction, embedding)."""
        return self.forward(x, output="features")

    def forward_dual(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(teacher logits, student logits) of both decoders on one shared encoding."""
        return self.forward(x, output="dual")

    def branch_state_dict(self, branch: str = "student") -> dict[str, Tensor]:
        """The weights of a single-decoder network made of the encoder and one branch.

        Deploying the dual-branch method's student: load the result into
        ``build_network(spec)`` (built without a second decoder).
        """
        self._decoder(branch)
        state = {}
        for key, value in self.state_dict().items():
            if key.startswith("student_decoder."):
                if branch == "student":
                    state["decoder." + key[len("student_decoder."):]] = value
            elif key.startswith("decoder."):
                if branch == "teacher":
                    state[key] = value
            else:
                state[key] = value
        return state

    # -- helpers ---------------------------------------------------------------------------

    def _decoder(self, branch: str) -> nn.Module:
        if branch == "teacher":
            return self.decoder
        if branch == "student":
            if self.student_decoder is None:
                raise NetworkError(f"{type(self).__name__} was built without a second decoder; "
                                   "build it with second_decoder=True for the student branch")
            return self.student_decoder
        raise NetworkError(f"{type(self).__name__}: unknown branch {branch!r}; expected one of {BRANCHES}")

    def _check_input(self, x: Tensor) -> None:
        name = type(self).__name__
        if x.ndim != 5:
            raise NetworkError(f"{name} expects a 5-D batch (B, C, Z, Y, X); got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise NetworkError(f"{name} expects {self.in_channels} image channel(s); got {x.shape[1]}")
        sizes = tuple(x.shape[2:])
        if any(s % self.input_multiple for s in sizes):
            raise NetworkError(f"{name} needs (z, y, x) sizes that are multiples of {self.input_multiple}; "
                               f"got {sizes}: pad the input or choose such a patch size")


def dropout_layers(net: nn.Module) -> list[nn.Module]:
    """Every dropout module inside ``net`` (any of nn.Dropout, Dropout2d/3d, AlphaDropout)."""
    kinds = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
    return [m for m in net.modules() if isinstance(m, kinds)]


def enable_mc_dropout(net: nn.Module) -> int:
    """Switch only the dropout layers to training mode, for Monte-Carlo dropout sampling.

    Call it after ``net.eval()``: normalisation layers keep their running statistics and only
    dropout samples. A later ``net.eval()`` or ``net.train()`` resets every layer.

    Returns:
        The number of dropout layers switched on.

    Raises:
        NetworkError: the network has no dropout layer (its card has ``dropout: false``), so
            MC samples would all be equal and the variance silently zero.
    """
    layers = dropout_layers(net)
    if not layers:
        raise NetworkError(f"{type(net).__name__} has no dropout layer: MC-dropout uncertainty needs a "
                           "card with network.dropout: true")
    for layer in layers:
        layer.train()
    return len(layers)


def count_parameters(net: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


__all__ = ["NetworkError", "SegmentationNetwork", "FeaturePerturbation", "dropout_layers",
           "enable_mc_dropout", "count_parameters"]
