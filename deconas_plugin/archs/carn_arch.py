"""CARN baseline: Ahn et al., "Fast, Accurate, and Lightweight Super-Resolution with Cascading
Residual Network", ECCV 2018.

Follows the reference code nmhkahn/CARN-pytorch (``carn/model/carn.py`` and ``ops.py``), with
sub-module names kept (``entry``, ``b1``..``b3``, ``c1``..``c3``, ``upsample.up`` /
``upsample.up2``..``up4``, ``exit``, ``body``) so that parameter names match the reference's.
The reference's ``MeanShift`` layers (1x1 convs with frozen weights, 24 parameters in all) are
replaced by a buffer, so the count below covers trainable weights only.
"""
import torch
from torch import nn
from torch.nn import functional as F

from basicsr.utils.registry import ARCH_REGISTRY

from .rdn_arch import check_upscale, mean_buffer


class BasicBlock(nn.Module):
    """Conv -> ReLU (the reference's ``ops.BasicBlock``; CARN uses it as a 1x1 fusion conv).

    Args:
        in_ch (int): Input channels.
        out_ch (int): Output channels.
        kernel_size (int): Kernel size; padding keeps the spatial size. Default: 1.

    Shape:
        (B, in_ch, H, W) -> (B, out_ch, H, W)
    """

    def __init__(self, in_ch, out_ch, kernel_size=1):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size, 1, kernel_size // 2), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.body(x)


class ResidualBlock(nn.Module):
    """ReLU(x + conv3x3(ReLU(conv3x3(x)))), the reference's ``ops.ResidualBlock``.

    Unlike BasicSR's ``ResidualBlockNoBN`` it applies a ReLU after the addition.

    Args:
        num_feat (int): Input/output channels.

    Shape:
        (B, num_feat, H, W) -> (B, num_feat, H, W)
    """

    def __init__(self, num_feat):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(num_feat, num_feat, 3, 1, 1))

    def forward(self, x):
        return F.relu(self.body(x) + x, inplace=True)


class CascadingBlock(nn.Module):
    """Local cascading block (the reference's ``Block``): three residual blocks, each output
    concatenated to all earlier features and fused back to ``num_feat`` by a 1x1 conv + ReLU.

    Args:
        num_feat (int): Input/output channels.

    Shape:
        (B, num_feat, H, W) -> (B, num_feat, H, W)
    """

    def __init__(self, num_feat):
        super().__init__()
        self.b1 = ResidualBlock(num_feat)
        self.b2 = ResidualBlock(num_feat)
        self.b3 = ResidualBlock(num_feat)
        self.c1 = BasicBlock(num_feat * 2, num_feat)
        self.c2 = BasicBlock(num_feat * 3, num_feat)
        self.c3 = BasicBlock(num_feat * 4, num_feat)

    def forward(self, x):
        return _cascade(x, (self.b1, self.b2, self.b3), (self.c1, self.c2, self.c3))


def _cascade(x, blocks, fusions):
    """Cascading connection shared by the local and the global level of CARN."""
    cat = out = x
    for block, fusion in zip(blocks, fusions):
        cat = torch.cat([cat, block(out)], dim=1)
        out = fusion(cat)
    return out


class UpsampleStage(nn.Module):
    """Sub-pixel upsampler of one scale (the reference's ``ops._UpsampleBlock``).

    x2 / x4: one / two times [conv3x3 num_feat -> 4 * num_feat, ReLU, PixelShuffle(2)];
    x3: conv3x3 num_feat -> 9 * num_feat, ReLU, PixelShuffle(3).

    Args:
        num_feat (int): Input/output channels.
        scale (int): 2, 3 or 4.
        group (int): Groups of the convs. Default: 1.

    Shape:
        (B, num_feat, H, W) -> (B, num_feat, H * scale, W * scale)
    """

    def __init__(self, num_feat, scale, group=1):
        super().__init__()
        steps = [3] if scale == 3 else [2] * {2: 1, 4: 2}[scale]
        layers = []
        for s in steps:
            layers += [nn.Conv2d(num_feat, s * s * num_feat, 3, 1, 1, groups=group), nn.ReLU(inplace=True)]
            layers += [nn.PixelShuffle(s)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


class UpsampleBlock(nn.Module):
    """Upsampler of CARN (the reference's ``ops.UpsampleBlock``).

    Single-scale: one stage ``up`` for ``upscale``. Multi-scale: three stages ``up2``, ``up3``,
    ``up4`` are built (all count as parameters) and ``forward`` runs the one for ``upscale``.

    Args:
        num_feat (int): Input/output channels.
        upscale (int): Scale used by ``forward``: 2, 3 or 4.
        multi_scale (bool): Build the x2, x3 and x4 stages.
        group (int): Groups of the convs. Default: 1.

    Shape:
        (B, num_feat, H, W) -> (B, num_feat, H * upscale, W * upscale)
    """

    def __init__(self, num_feat, upscale, multi_scale, group=1):
        super().__init__()
        self.upscale = upscale
        self.multi_scale = multi_scale
        if multi_scale:
            self.up2 = UpsampleStage(num_feat, 2, group)
            self.up3 = UpsampleStage(num_feat, 3, group)
            self.up4 = UpsampleStage(num_feat, 4, group)
        else:
            self.up = UpsampleStage(num_feat, upscale, group)

    def forward(self, x):
        stage = getattr(self, f'up{self.upscale}') if self.multi_scale else self.up
        return stage(x)


@ARCH_REGISTRY.register()
class CARN(nn.Module):
    """Cascading Residual Network (CARN), the full (non-mobile) model of the paper.

    Structure (reference code): ``entry`` conv3x3 num_in_ch -> num_feat; three cascading blocks
    ``b1``..``b3`` whose outputs are concatenated with all earlier features and fused by 1x1 conv +
    ReLU (``c1``..``c3``); ``upsample`` (sub-pixel, see :class:`UpsampleBlock`); ``exit`` conv3x3
    num_feat -> num_out_ch. PyTorch's default initialisation, as in the reference.

    Parameter counts with defaults (num_feat=64, group=1), trainable weights only:
      * ``multi_scale=False``: 964,163 at x2 (one x2 upsampler).
      * ``multi_scale=True``: 1,591,939 whatever ``upscale`` is. The x2, x3 and x4 upsamplers are all
        built, as in the reference, and ``forward`` uses only the one for ``upscale``; the unused two
        are still parameters. This is the model the paper reports as 1,592K parameters.
    The reference's two ``MeanShift`` 1x1 convs add 24 frozen parameters (1,591,963 on its
    ``parameters()``); here the mean is a buffer instead.

    ``group`` only applies to the upsampler convs, as in the reference (where it is meant for
    CARN-M; the cascading blocks of CARN ignore it).

    Input normalisation, EDSR-style: ``x = (x - rgb_mean) * img_range`` at the input and
    ``out / img_range + rgb_mean`` at the output. With ``img_range=1.0`` this is exactly the
    reference's ``sub_mean`` / ``add_mean``. ``rgb_mean`` is a non-persistent buffer: no parameters,
    no ``state_dict`` key, follows ``.to()``. To load a reference checkpoint, drop its ``sub_mean.*``
    and ``add_mean.*`` entries.

    Args:
        num_in_ch (int): Input channels. Default: 3.
        num_out_ch (int): Output channels. Default: 3.
        num_feat (int): Feature channels (64 in the paper). Default: 64.
        upscale (int): Upsampling factor used by ``forward``, one of 2, 3, 4 (else ``ValueError``).
            Default: 2.
        multi_scale (bool): Build the x2, x3 and x4 upsamplers (see above). Default: False.
        group (int): Groups of the upsampler convs. Default: 1.
        img_range (float): Multiplier applied after mean subtraction. Default: 1.0.
        rgb_mean (tuple[float]): Per-channel mean, in the input's [0, 1] range; 1 value or one per
            channel (num_in_ch == num_out_ch). Default: DIV2K mean (0.4488, 0.4371, 0.4040).

    Shape:
        (B, num_in_ch, H, W) float in [0, 1] -> (B, num_out_ch, H * upscale, W * upscale)
    """

    def __init__(self,
                 num_in_ch=3,
                 num_out_ch=3,
                 num_feat=64,
                 upscale=2,
                 multi_scale=False,
                 group=1,
                 img_range=1.0,
                 rgb_mean=(0.4488, 0.4371, 0.4040)):
        super().__init__()
        upscale = check_upscale(upscale)
        self.upscale = upscale
        self.img_range = img_range
        self.register_buffer('mean', mean_buffer(rgb_mean, num_in_ch, num_out_ch), persistent=False)

        self.entry = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.b1 = CascadingBlock(num_feat)
        self.b2 = CascadingBlock(num_feat)
        self.b3 = CascadingBlock(num_feat)
        self.c1 = BasicBlock(num_feat * 2, num_feat)
        self.c2 = BasicBlock(num_feat * 3, num_feat)
        self.c3 = BasicBlock(num_feat * 4, num_feat)
        self.upsample = UpsampleBlock(num_feat, upscale, multi_scale, group)
        self.exit = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x):
        mean = self.mean.to(x.dtype)
        x = self.entry((x - mean) * self.img_range)
        x = _cascade(x, (self.b1, self.b2, self.b3), (self.c1, self.c2, self.c3))
        x = self.exit(self.upsample(x))
        return x / self.img_range + mean
