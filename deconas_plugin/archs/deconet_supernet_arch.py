from typing import Optional, Sequence

import torch
from basicsr.utils.registry import ARCH_REGISTRY

from ..genotype import Genotype
from .deconas_arch import DeCoNASNet
from .deconas_blocks import DeCoNASBody


@ARCH_REGISTRY.register()
class DeCoNetSupernet(DeCoNASBody):
    """The weight-sharing supernet of the DeCoNAS search space (ENAS-style).

    Every op of node i owns the weight for all i possible inputs, and the fusion convs for all
    features; ``forward(x, genotype)`` runs only the sub-network the genotype selects, on the weight
    slices of its chosen inputs (see ``deconas_blocks``).

    Args: those of ``DeCoNASNet`` without the genotype, plus
        feature_fusion_search: whether genotypes of this search carry the M + N fusion bits (FF1).
    Shapes: (B, num_in_ch, h, w) -> (B, num_out_ch, h * upscale, w * upscale).
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_blocks: int = 4,
                 num_nodes: int = 4, upscale: int = 2, img_range: float = 1.0,
                 rgb_mean: Optional[Sequence[float]] = None, feature_fusion_search: bool = False):
        super().__init__(None, num_in_ch, num_out_ch, num_feat, num_blocks, num_nodes, upscale, img_range, rgb_mean)
        self.feature_fusion_search = feature_fusion_search
        self.arch_args = dict(num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat, num_blocks=num_blocks,
                              num_nodes=num_nodes, upscale=upscale, img_range=img_range, rgb_mean=rgb_mean)

    def parse_genotype(self, genotype) -> Genotype:
        """Read and check a genotype for this supernet (fusion bits required iff feature_fusion_search)."""
        g = Genotype.parse(genotype, num_nodes=self.num_nodes, num_blocks=self.num_blocks)
        if g.has_fusion_bits != self.feature_fusion_search:
            want = 'with' if self.feature_fusion_search else 'without'
            raise ValueError(f'this supernet has feature_fusion_search={self.feature_fusion_search}: it expects '
                             f'genotypes {want} fusion bits, got {g}')
        return g

    def forward(self, x: torch.Tensor, genotype) -> torch.Tensor:
        if not isinstance(genotype, Genotype):
            genotype = self.parse_genotype(genotype)
        return self.run(x, genotype)

    def extract(self, genotype) -> DeCoNASNet:
        """A DeCoNASNet for ``genotype`` carrying this supernet's (shared) weights.

        Its output equals ``self(x, genotype)``; use it to retrain from inherited weights.
        """
        g = self.parse_genotype(genotype)
        net = DeCoNASNet(g, **self.arch_args).to(next(self.parameters()).device)
        state = {k: v.detach().clone() for k, v in self.state_dict().items()}
        layers = dict(self.named_modules())
        for name, ids in self.subset_inputs(g):
            for key, value in layers[name].sliced_state(ids).items():
                state[f'{name}.{key}'] = value
        wanted = net.state_dict().keys()
        net.load_state_dict({k: state[k] for k in wanted})
        return net
