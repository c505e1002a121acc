"""RDN baseline: Zhang et al., "Residual Dense Network for Image Super-Resolution", CVPR 2018.

Follows the authors' PyTorch code as kept in EDSR-PyTorch (``src/model/rdn.py``, the one the RDN
authors point to). Sub-module names (``SFENet1``, ``SFENet2``, ``RDBs``, ``GFF``, ``UPNet``,
``convs``, ``LFF``) are kept so that parameter names match the reference's. The only addition is an
EDSR-style input normalisation (``img_range``, ``rgb_mean``) held in a buffer: it adds no parameters
and no ``state_dict`` entries.
"""
import torch
from torch import nn

from basicsr.utils.registry import ARCH_REGISTRY

_UPSCALES = (2, 3, 4)


def check_upscale(upscale):
    """``upscale`` as an int, or a ValueError naming the supported factors (RDN's and CARN's)."""
    if upscale not in _UPSCALES:
        raise ValueError(f'upscale={upscale!r} is not supported; allowed values: {_UPSCALES}.')
    return int(upscale)


def mean_buffer(rgb_mean, num_in_ch, num_out_ch):
    """(1, len(rgb_mean), 1, 1) float tensor; len 1 broadcasts, otherwise it must match both ends."""
    rgb_mean = tuple(float(m) for m in rgb_mean)
    if len(rgb_mean) != 1 and not len(rgb_mean) == num_in_ch == num_out_ch:
        raise ValueError(f'rgb_mean has {len(rgb_mean)} values; expected 1 or num_in_ch == num_out_ch '
                         f'values (got num_in_ch={num_in_ch}, num_out_ch={num_out_ch}).')
    return torch.tensor(rgb_mean, dtype=torch.float32).view(1, -1, 1, 1)


class RDBConv(nn.Module):
    """One densely connected layer of an RDB: conv3x3 -> ReLU, concatenated to its input.

    Args:
        in_ch (int): Input channels (G0 + c * G for the c-th layer).
        growth_rate (int): Channels added by this layer (G).

    Shape:
        (B, in_ch, H, W) -> (B, in_ch + growth_rate, H, W)
    """

    def __init__(self, in_ch, growth_rate):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_ch, growth_rate, 3, 1, 1), nn.ReLU(inplace=True))

    def forward(self, x):
        return torch.cat((x, self.conv(x)), 1)


class RDB(nn.Module):
    """Residual dense block: C dense layers, local feature fusion (1x1 conv), local residual.

    Args:
        num_feat (int): Block input/output channels (G0).
        growth_rate (int): Growth rate of each dense layer (G).
        num_layers (int): Number of dense layers (C).

    Shape:
        (B, num_feat, H, W) -> (B, num_feat, H, W)
    """

    def __init__(self, num_feat, growth_rate, num_layers):
        super().__init__()
        self.convs = nn.Sequential(*[RDBConv(num_feat + c * growth_rate, growth_rate) for c in range(num_layers)])
        self.LFF = nn.Conv2d(num_feat + num_layers * growth_rate, num_feat, 1, 1, 0)  # local feature fusion

    def forward(self, x):
        return self.LFF(self.convs(x)) + x


@ARCH_REGISTRY.register()
class RDN(nn.Module):
    """Residual Dense Network (RDN) for single-image super-resolution.

    Structure (reference code, EDSR-PyTorch ``rdn.py``):
      * SFENet: ``SFENet1`` conv3x3 num_in_ch -> G0, ``SFENet2`` conv3x3 G0 -> G0.
      * ``RDBs``: D residual dense blocks (C dense layers of growth G, 1x1 local fusion, local residual).
      * ``GFF``: conv1x1 D*G0 -> G0, conv3x3 G0 -> G0, plus the global residual from ``SFENet1``.
      * ``UPNet``: x2/x3: conv3x3 G0 -> G*s*s, PixelShuffle(s), conv3x3 G -> num_out_ch;
        x4: conv3x3 G0 -> 4G, PixelShuffle(2), conv3x3 G -> 4G, PixelShuffle(2), conv3x3 G -> num_out_ch.

    Default arguments are the paper's RDN (D=16, C=8, G=64, G0=64): 22,123,395 parameters at x2.
    PyTorch's default initialisation is used, as in the reference.

    Input normalisation (not in the reference RDN, added EDSR-style as in BasicSR's ``EDSR``):
    ``x = (x - rgb_mean) * img_range`` at the input and ``out / img_range + rgb_mean`` at the output.
    ``rgb_mean`` is a non-persistent buffer: no parameters, no ``state_dict`` key, follows ``.to()``.
    Parameter names and shapes are the reference's, so a state_dict of the reference RDN loads as is;
    the reference works on [0, 255] inputs with no mean shift, which
    ``img_range=255., rgb_mean=(0., 0., 0.)`` reproduces on [0, 1] inputs.

    Args:
        num_in_ch (int): Input channels. Default: 3.
        num_out_ch (int): Output channels. Default: 3.
        num_feat (int): G0, channels between blocks. Default: 64.
        num_blocks (int): D, number of residual dense blocks. Default: 16.
        num_layers (int): C, dense conv layers per block. Default: 8.
        growth_rate (int): G, growth rate of the dense layers. Default: 64.
        upscale (int): Upsampling factor, one of 2, 3, 4 (else ``ValueError``). Default: 2.
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
                 num_blocks=16,
                 num_layers=8,
                 growth_rate=64,
                 upscale=2,
                 img_range=1.0,
                 rgb_mean=(0.4488, 0.4371, 0.4040)):
        super().__init__()
        upscale = check_upscale(upscale)
        self.upscale = upscale
        self.img_range = img_range
        self.register_buffer('mean', mean_buffer(rgb_mean, num_in_ch, num_out_ch), persistent=False)

        # shallow feature extraction
        self.SFENet1 = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.SFENet2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        # residual dense blocks
        self.RDBs = nn.ModuleList([RDB(num_feat, growth_rate, num_layers) for _ in range(num_blocks)])
        # global feature fusion
        self.GFF = nn.Sequential(
            nn.Conv2d(num_blocks * num_feat, num_feat, 1, 1, 0),
            nn.Conv2d(num_feat, num_feat, 3, 1, 1))
        # up-sampling net
        if upscale in (2, 3):
            up = [nn.Conv2d(num_feat, growth_rate * upscale * upscale, 3, 1, 1), nn.PixelShuffle(upscale)]
        else:  # 4
            up = [
                nn.Conv2d(num_feat, growth_rate * 4, 3, 1, 1), nn.PixelShuffle(2),
                nn.Conv2d(growth_rate, growth_rate * 4, 3, 1, 1), nn.PixelShuffle(2)
            ]
        self.UPNet = nn.Sequential(*up, nn.Conv2d(growth_rate, num_out_ch, 3, 1, 1))

    def forward(self, x):
        mean = self.mean.to(x.dtype)
        x = (x - mean) * self.img_range

        f_1 = self.SFENet1(x)
        x = self.SFENet2(f_1)
        block_outs = []
        for block in self.RDBs:
            x = block(x)
            block_outs.append(x)
        x = self.GFF(torch.cat(block_outs, 1)) + f_1
        x = self.UPNet(x)

        return x / self.img_range + mean
