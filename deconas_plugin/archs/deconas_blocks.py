"""Layers of DeCoNASNet, written once for both the fixed network and the weight-sharing supernet.

Every layer whose input is a concat of chosen features (the mix-node ops, local and global feature
fusion) is a ``SubsetInput`` module: it is built for ``num_inputs`` feature maps of ``num_feat``
channels each and ``forward(feats, ids)`` reads only the weight slices of the inputs ``ids``.

* In the supernet an op of node i is built for all i possible inputs and called with the ids chosen
  by the genotype: no compute is spent on unchosen inputs and only the chosen slices get gradients.
* In the fixed network an op is built for exactly its chosen inputs and called with ``ids=None``
  (the whole weight), so it holds no unused parameter.

``DeCoNASBody`` is the whole network (SFENet, DNBs with dense inter-block connections, GFF, UPNet);
``DeCoNASNet`` (fixed genotype) and ``DeCoNetSupernet`` (genotype per forward) are thin subclasses.

A training step of these layers is launch-bound on a GPU (many small kernels), so the DNB dispatches
few ops: one ReLU of x_0 per block, one concat per distinct input set, a node's mean as a sum divided
once (``utils/op_count.py`` counts them; ``tests/test_op_count.py`` checks the numbers against the
plain formula).
"""
import math
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from basicsr.archs.arch_util import Upsample
from basicsr.archs.rcan_arch import ChannelAttention
from torch import nn

from ..genotype import NUM_OPS, Genotype

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
CA_REDUCTION = 4  # the reference code squeezes by 4, not RCAN's 16


def take_inputs(weight: torch.Tensor, dim: int, ids: Sequence[int], num_feat: int) -> torch.Tensor:
    """The slices of ``weight`` along ``dim`` that belong to inputs ``ids`` (``num_feat`` channels each).

    Contiguous runs of ids become views (``narrow``), so the common cases copy nothing.
    """
    runs: List[Tuple[int, int]] = []
    for j in ids:
        if runs and runs[-1][1] == j:
            runs[-1] = (runs[-1][0], j + 1)
        else:
            runs.append((j, j + 1))
    parts = [weight.narrow(dim, a * num_feat, (b - a) * num_feat) for a, b in runs]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


class SubsetInput(nn.Module):
    """Base of layers that read the concat of a subset of ``num_inputs`` feature maps.

    Subclasses list in ``sliced_dims`` which parameter is sliced along which dim.
    """

    sliced_dims: Dict[str, int] = {}

    def __init__(self, num_inputs: int, num_feat: int):
        super().__init__()
        self.num_inputs = num_inputs
        self.num_feat = num_feat

    def param(self, name: str, ids: Optional[Sequence[int]]) -> torch.Tensor:
        """Parameter ``name`` restricted to inputs ``ids`` (the whole parameter for ``ids=None``)."""
        p = getattr(self, name)
        if ids is None or name not in self.sliced_dims:
            return p
        if len(ids) == self.num_inputs:
            return p
        return take_inputs(p, self.sliced_dims[name], ids, self.num_feat)

    def sliced_state(self, ids: Sequence[int]) -> Dict[str, torch.Tensor]:
        """This layer's parameters restricted to ``ids``: the state of the same layer built for them."""
        return {name: self.param(name, ids).detach().clone() for name, _ in self.named_parameters(recurse=False)}

    @staticmethod
    def concat(feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return feats[0] if len(feats) == 1 else torch.cat(list(feats), 1)


def _init_conv(weight: torch.Tensor, bias: Optional[torch.Tensor]):
    # The init of nn.Conv2d, on the weight as allocated.
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]
        nn.init.uniform_(bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))


class ConvOp(SubsetInput):
    """``conv(act(concat(chosen inputs)))`` with a k x k (optionally dilated) kernel and a bias.

    Args:
        num_inputs: inputs the weight is built for; num_feat: channels per input (C);
        out_channels: output channels; kernel_size, dilation: of the conv (padding keeps the size);
        pre_relu: apply ReLU to the concat first (mix-node ops) or not (fusion 1x1 convs).
    Shapes: ``feats`` = len(ids) tensors (B, C, H, W), or their concat as one tensor -> (B, out_channels, H, W).
    """

    sliced_dims = {'weight': 1}

    def __init__(self, num_inputs: int, num_feat: int, out_channels: int, kernel_size: int = 3, dilation: int = 1,
                 pre_relu: bool = True):
        super().__init__(num_inputs, num_feat)
        self.dilation = dilation
        self.padding = dilation * (kernel_size - 1) // 2
        self.pre_relu = pre_relu
        self.weight = nn.Parameter(torch.empty(out_channels, num_inputs * num_feat, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        _init_conv(self.weight, self.bias)

    def forward(self, feats: Sequence[torch.Tensor], ids: Optional[Sequence[int]] = None,
                activated: bool = False) -> torch.Tensor:
        """``activated``: the feats are ReLU outputs already (or non-negative), so the pre-ReLU is skipped."""
        x = self.concat(feats)
        if self.pre_relu and not activated:
            x = F.relu(x)
        return F.conv2d(x, self.param('weight', ids), self.bias, padding=self.padding, dilation=self.dilation)


class SepConvOp(SubsetInput):
    """Depthwise-separable 3x3: ReLU, depthwise 3x3 (no bias) over the concat, pointwise 1x1 to C (bias).

    Shapes: ``feats`` = len(ids) tensors (B, C, H, W), or their concat as one tensor -> (B, C, H, W).
    """

    sliced_dims = {'depthwise_weight': 0, 'pointwise_weight': 1}

    def __init__(self, num_inputs: int, num_feat: int):
        super().__init__(num_inputs, num_feat)
        self.depthwise_weight = nn.Parameter(torch.empty(num_inputs * num_feat, 1, 3, 3))
        self.pointwise_weight = nn.Parameter(torch.empty(num_feat, num_inputs * num_feat, 1, 1))
        self.pointwise_bias = nn.Parameter(torch.empty(num_feat))
        _init_conv(self.depthwise_weight, None)
        _init_conv(self.pointwise_weight, self.pointwise_bias)

    def forward(self, feats: Sequence[torch.Tensor], ids: Optional[Sequence[int]] = None,
                activated: bool = False) -> torch.Tensor:
        """``activated``: the feats are ReLU outputs already (or non-negative), so the ReLU is skipped."""
        x = self.concat(feats)
        if not activated:
            x = F.relu(x)
        x = F.conv2d(x, self.param('depthwise_weight', ids), padding=1, groups=x.shape[1])
        return F.conv2d(x, self.param('pointwise_weight', ids), self.pointwise_bias)


def build_op(op: int, num_inputs: int, num_feat: int) -> SubsetInput:
    """Candidate op ``op`` of a mix node: 0 conv3x3, 1 separable conv3x3, 2 dilated conv3x3 (rate 3)."""
    if op == 0:
        return ConvOp(num_inputs, num_feat, num_feat, 3)
    if op == 1:
        return SepConvOp(num_inputs, num_feat)
    if op == 2:
        return ConvOp(num_inputs, num_feat, num_feat, 3, dilation=3)
    raise ValueError(f'unknown op {op}: DeCoNAS has ops 0 (conv3x3), 1 (sep_conv3x3), 2 (dil_conv3x3)')


def attended_relu(total: torch.Tensor, attention: ChannelAttention, num_terms: int = 1) -> torch.Tensor:
    """A node's output ``attention(ReLU(total / num_terms))``: the channel attention of the mean of its
    ``num_terms`` ops, given their sum (one division instead of a stack and a mean)."""
    return attention(torch.relu(total / num_terms if num_terms > 1 else total))


class DenseNodeBlock(nn.Module):
    """A DNB: M mix nodes with channel attention, local feature fusion and a local residual.

    ``genotype=None`` builds the supernet block (every op of node i for all i inputs, LFF for all
    M + 1 features); a genotype builds exactly the layers it uses: nothing for a node whose output
    nothing reads (``Genotype.live_nodes``; its channel attention is a parameter-free placeholder so
    that the others keep their index, hence their parameter names).
    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, num_nodes: int, num_feat: int, genotype: Optional[Genotype] = None):
        super().__init__()
        self.num_nodes = num_nodes
        self.genotype = genotype
        self.ops = nn.ModuleDict()
        live = range(1, num_nodes + 1) if genotype is None else genotype.live_nodes()
        for node in live:
            for op in range(NUM_OPS):
                n_in = node if genotype is None else len(genotype.op_inputs(node, op))
                if n_in:
                    self.ops[f'node{node}_op{op}'] = build_op(op, n_in, num_feat)
        self.attention = nn.ModuleList(
            ChannelAttention(num_feat, CA_REDUCTION) if node in live else nn.Identity()
            for node in range(1, num_nodes + 1))
        n_local = num_nodes + 1 if genotype is None else len(genotype.local_inputs())
        self.local_fusion = ConvOp(n_local, num_feat, num_feat, 1, pre_relu=False)

    def subset_inputs(self, genotype: Genotype) -> Iterator[Tuple[str, Tuple[int, ...]]]:
        """(layer name, chosen input ids) of every SubsetInput layer that ``genotype`` runs."""
        for node in genotype.live_nodes():
            for op in range(NUM_OPS):
                ids = genotype.op_inputs(node, op)
                if ids:
                    yield f'ops.node{node}_op{op}', ids
        yield 'local_fusion', genotype.local_inputs()

    def forward(self, x: torch.Tensor, genotype: Optional[Genotype] = None) -> torch.Tensor:
        g = genotype or self.genotype
        fixed = self.genotype is not None  # a fixed block's layers hold exactly the chosen inputs
        feats = [x]
        # The ops' inputs after their pre-ReLU. A node output x_j (j >= 1) is a channel-attention output
        # ReLU(h) * sigmoid(.) >= 0, on which the ReLU is the identity: only x_0 needs it, once for all ops.
        acts = [F.threshold(x, 0., 0.)]  # = ReLU; its backward reads the input, not the output: 2 ops fewer
        inputs: Dict[Tuple[int, ...], torch.Tensor] = {}
        live = g.live_nodes()
        for node in range(1, self.num_nodes + 1):
            if node not in live:  # nothing reads it: not built (fixed network), not run (supernet)
                feats.append(None)
                acts.append(None)
                continue
            total, n_ops = None, 0
            for op in range(NUM_OPS):
                ids = g.op_inputs(node, op)
                if ids:
                    if ids not in inputs:  # ops reading the same inputs share one concat
                        inputs[ids] = SubsetInput.concat([acts[j] for j in ids])
                    out = self.ops[f'node{node}_op{op}']([inputs[ids]], None if fixed else ids, activated=True)
                    total = out if total is None else total + out
                    n_ops += 1
            # Mean of the active ops (a sum, divided in attended_relu: fewer ops than stack + mean); a
            # node with none passes on its predecessor (reference code).
            feats.append(attended_relu(feats[node - 1] if total is None else total, self.attention[node - 1],
                                       max(n_ops, 1)))
            acts.append(feats[-1])
        ids = g.local_inputs()
        return self.local_fusion([feats[j] for j in ids], None if fixed else ids) + x


class DeCoNASBody(nn.Module):
    """DeCoNASNet (``genotype`` given) or its supernet DeCoNet (``genotype=None``).

    SFENet -> N DNBs (block d > 1 reads conv1x1(concat(F_0..F_{d-1}))) -> GFF
    (conv3x3(conv1x1(concat(chosen F_0..F_N))) + F_-1) -> UPNet (conv3x3 + pixel shuffle) -> conv3x3.
    Input (B, num_in_ch, h, w) in [0, 1] -> (B, num_out_ch, h*upscale, w*upscale).

    Args:
        genotype: the DNB cell (and fusion bits) for a fixed network; None for the supernet.
        num_in_ch, num_out_ch: image channels. num_feat: C. num_blocks: N. num_nodes: M.
        upscale: 2, 3 or 4.
        img_range, rgb_mean: EDSR-style input normalisation ``(x - mean) * img_range`` undone at the
            output; a buffer, no parameters. Defaults: 1.0 and the DIV2K RGB mean.
    """

    def __init__(self, genotype: Optional[Genotype], num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64,
                 num_blocks: int = 4, num_nodes: int = 4, upscale: int = 2, img_range: float = 1.0,
                 rgb_mean: Optional[Sequence[float]] = None):
        super().__init__()
        if upscale not in (2, 3, 4):
            raise ValueError(f'upscale must be 2, 3 or 4, got {upscale!r}')
        for key, value in (('num_feat', num_feat), ('num_blocks', num_blocks), ('num_nodes', num_nodes)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'{key} must be a positive integer, got {value!r}')
        if num_feat % CA_REDUCTION:
            raise ValueError(f'num_feat must be a multiple of {CA_REDUCTION} (channel attention), got {num_feat}')
        if genotype is not None:
            genotype.check(num_nodes=num_nodes, num_blocks=num_blocks)
        if rgb_mean is None:
            rgb_mean = DIV2K_RGB_MEAN if num_in_ch == 3 else (0.0, ) * num_in_ch
        if len(rgb_mean) != num_in_ch or (num_in_ch != num_out_ch and any(rgb_mean)):
            raise ValueError(f'rgb_mean {list(rgb_mean)} must have num_in_ch = {num_in_ch} values '
                             f'(and be zero when num_out_ch = {num_out_ch} differs)')
        self.genotype = genotype
        self.num_in_ch, self.num_out_ch, self.num_feat = num_in_ch, num_out_ch, num_feat
        self.num_blocks = num_blocks
        self.num_nodes = num_nodes
        self.upscale = upscale
        self.img_range = img_range
        self.register_buffer('mean', torch.tensor(rgb_mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

        self.sfe1 = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.sfe2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        # Block d (2..N) reads a 1x1 conv of concat(F_0..F_{d-1}); there is none after the last block.
        self.block_inputs = nn.ModuleList(nn.Conv2d(d * num_feat, num_feat, 1) for d in range(2, num_blocks + 1))
        self.blocks = nn.ModuleList(DenseNodeBlock(num_nodes, num_feat, genotype) for _ in range(num_blocks))
        n_global = num_blocks + 1 if genotype is None else len(genotype.global_inputs(num_blocks))
        self.global_fusion = ConvOp(n_global, num_feat, num_feat, 1, pre_relu=False)
        self.global_conv = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.upsample = Upsample(upscale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def size(self) -> dict:
        """The sizes ``complexity.count_params`` needs besides the genotype."""
        return dict(num_blocks=self.num_blocks, num_feat=self.num_feat, upscale=self.upscale, num_in_ch=self.num_in_ch,
                    num_out_ch=self.num_out_ch)

    def subset_inputs(self, genotype: Genotype) -> Iterator[Tuple[str, Tuple[int, ...]]]:
        """(layer name, chosen input ids) of every SubsetInput layer that ``genotype`` runs."""
        for d, block in enumerate(self.blocks):
            for name, ids in block.subset_inputs(genotype):
                yield f'blocks.{d}.{name}', ids
        yield 'global_fusion', genotype.global_inputs(self.num_blocks)

    def run(self, x: torch.Tensor, genotype: Genotype) -> torch.Tensor:
        fixed = self.genotype is not None
        x = x - self.mean if self.img_range == 1 else (x - self.mean) * self.img_range  # skip a no-op op
        f_minus1 = self.sfe1(x)
        feats = [self.sfe2(f_minus1)]
        for d, block in enumerate(self.blocks):
            inp = feats[0] if d == 0 else self.block_inputs[d - 1](torch.cat(feats, 1))
            feats.append(block(inp, genotype))
        ids = genotype.global_inputs(self.num_blocks)
        x = self.global_conv(self.global_fusion([feats[j] for j in ids], None if fixed else ids)) + f_minus1
        x = self.conv_last(self.upsample(x))
        return (x if self.img_range == 1 else x / self.img_range) + self.mean
