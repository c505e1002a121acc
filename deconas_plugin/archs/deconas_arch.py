from typing import Optional, Sequence

import torch
from basicsr.utils.registry import ARCH_REGISTRY

from ..genotype import Genotype
from .deconas_blocks import DeCoNASBody


@ARCH_REGISTRY.register()
class DeCoNASNet(DeCoNASBody):
    """The fixed network of one genotype (Ahn & Cho, DeCoNAS), built as docs/networks.md describes.

    Only the layers the genotype uses exist. The paper genotype ``"7 6 4 3 0 2 2 3 4 1"`` at x2 with
    N = 4, M = 4, C = 64 has 1,693,251 parameters.

    Args:
        genotype: a ``Genotype`` or anything ``Genotype.parse`` reads (string, list, mapping).
        num_in_ch, num_out_ch, num_feat (C), num_blocks (N), num_nodes (M), upscale (2, 3, 4),
        img_range, rgb_mean: see ``DeCoNASBody``.
    Shapes: (B, num_in_ch, h, w) -> (B, num_out_ch, h * upscale, w * upscale).
    """

    def __init__(self, genotype, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_blocks: int = 4,
                 num_nodes: int = 4, upscale: int = 2, img_range: float = 1.0,
                 rgb_mean: Optional[Sequence[float]] = None):
        genotype = Genotype.parse(genotype, num_nodes=num_nodes, num_blocks=num_blocks)
        super().__init__(genotype, num_in_ch, num_out_ch, num_feat, num_blocks, num_nodes, upscale, img_range,
                         rgb_mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x, self.genotype)
