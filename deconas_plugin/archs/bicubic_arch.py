"""Bicubic interpolation baseline as a (parameter-free) BasicSR network."""
import torch
from torch import nn

from basicsr.utils.matlab_functions import imresize
from basicsr.utils.registry import ARCH_REGISTRY


@ARCH_REGISTRY.register()
class Bicubic(nn.Module):
    """MATLAB-compatible bicubic upsampling (``imresize(lr, s, 'bicubic')``), no parameters.

    The reference row "Bicubic" of SR papers (Set5 x2: 33.66 dB / 0.9299). Uses
    ``basicsr.utils.matlab_functions.imresize``, which runs on the CPU: the input is moved there
    and the output back to the input's device and dtype.

    Args:
        upscale (int): 2, 3 or 4.
        num_in_ch (int): Input channels. Default: 3.
        num_out_ch (int): Output channels, must equal ``num_in_ch``. Default: 3.
    """

    def __init__(self, upscale=2, num_in_ch=3, num_out_ch=3):
        super().__init__()
        if upscale not in (2, 3, 4):
            raise ValueError(f'Bicubic: upscale must be 2, 3 or 4, got {upscale!r}')
        if num_in_ch != num_out_ch:
            raise ValueError(f'Bicubic: num_out_ch ({num_out_ch}) must equal num_in_ch ({num_in_ch})')
        self.upscale = upscale
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_out_ch

    def extra_repr(self):
        return f'upscale={self.upscale}, num_in_ch={self.num_in_ch}, MATLAB imresize'

    @torch.no_grad()
    def forward(self, x):
        if x.dim() != 4 or x.size(1) != self.num_in_ch:
            raise ValueError(f'Bicubic: expected (B, {self.num_in_ch}, h, w), got {tuple(x.shape)}')
        x_cpu = x.detach().to('cpu', torch.float32)
        out = torch.stack([imresize(img, self.upscale) for img in x_cpu], dim=0)
        return out.to(device=x.device, dtype=x.dtype)
