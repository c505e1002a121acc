"""Exact parameter count of any genotype's DeCoNASNet, without building it (for the search penalty)."""
from .genotype import NUM_OPS, Genotype


def _conv(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def _op_params(op: int, num_inputs: int, c: int) -> int:
    if op == 1:  # depthwise 3x3 (no bias) + pointwise 1x1
        return num_inputs * c * 9 + _conv(num_inputs * c, c, 1)
    return _conv(num_inputs * c, c, 3)  # conv3x3 / dilated conv3x3


def count_params(genotype: Genotype, num_blocks: int, num_feat: int = 64, upscale: int = 2, num_in_ch: int = 3,
                 num_out_ch: int = 3) -> int:
    """Parameters of ``DeCoNASNet(genotype, num_blocks=..., num_feat=..., upscale=...)``, counted exactly."""
    c, live = num_feat, genotype.live_nodes()  # a node whose output nothing reads is not built
    block = sum(
        _op_params(op, len(genotype.op_inputs(node, op)), c) for node in live for op in range(NUM_OPS)
        if genotype.op_inputs(node, op))
    block += len(live) * (_conv(c, c // 4, 1) + _conv(c // 4, c, 1))  # channel attention of every built node
    block += _conv(len(genotype.local_inputs()) * c, c, 1)  # local feature fusion
    total = _conv(num_in_ch, c, 3) + _conv(c, c, 3)  # SFENet
    total += sum(_conv(d * c, c, 1) for d in range(2, num_blocks + 1))  # dense inter-block 1x1 convs
    total += num_blocks * block
    total += _conv(len(genotype.global_inputs(num_blocks)) * c, c, 1) + _conv(c, c, 3)  # GFF
    total += 2 * _conv(c, 4 * c, 3) if upscale == 4 else _conv(c, upscale * upscale * c, 3)  # UPNet
    return total + _conv(c, num_out_ch, 3)


def max_params(num_blocks: int, num_nodes: int, num_feat: int = 64, upscale: int = 2, num_in_ch: int = 3,
               num_out_ch: int = 3) -> int:
    """Parameters of the largest genotype of the space (every op reads every input, all fusion inputs)."""
    return count_params(Genotype.full(num_nodes), num_blocks, num_feat, upscale, num_in_ch, num_out_ch)


# ---------------------------------------------------------------------------------------------- MACs
PAPER_HR_SIZE = (1280, 720)  # (W, H) of the HR output the paper's complexity tables use


def paper_lr_size(upscale: int) -> tuple:
    """(h, w) of the LR input whose x``upscale`` output is 1280x720, rounded to nearest (x3: 240x427)."""
    w, h = PAPER_HR_SIZE
    return int(h / upscale + 0.5), int(w / upscale + 0.5)


def _conv_macs(c_in: int, c_out: int, k: int, pixels: int, groups: int = 1) -> int:
    # What mmengine counts for a conv: one multiply-add per weight per output pixel (bias not counted).
    return c_in // groups * c_out * k * k * pixels


def op_macs(op: int, num_inputs: int, c: int, pixels: int) -> int:
    """MACs of mix-node op ``op`` reading ``num_inputs`` features of ``c`` channels on ``pixels`` pixels."""
    if op == 1:  # depthwise 3x3 + pointwise 1x1
        return _conv_macs(num_inputs * c, num_inputs * c, 3, pixels, groups=num_inputs * c) + \
            _conv_macs(num_inputs * c, c, 1, pixels)
    return _conv_macs(num_inputs * c, c, 3, pixels)


def attention_macs(c: int, pixels: int) -> int:
    """Channel attention: the global average pool (one per input value, as mmengine counts it) and two 1x1
    convs on the pooled 1x1 map."""
    return c * pixels + _conv_macs(c, c // 4, 1, 1) + _conv_macs(c // 4, c, 1, 1)


def count_macs(genotype: Genotype, num_blocks: int, num_feat: int = 64, upscale: int = 2, num_in_ch: int = 3,
               num_out_ch: int = 3, lr_size=None) -> int:
    """Multiply-accumulates of one forward pass of ``DeCoNASNet(genotype, ...)`` on one LR image of
    ``lr_size`` = (h, w) (default: the LR of a 1280x720 output), counted exactly as mmengine's
    ``FlopAnalyzer`` counts the built network (convs and the attention's average pool; ReLU, sums,
    concat and pixel shuffle count nothing), without building it. Nodes that nothing reads are not
    built (``Genotype.live_nodes``, the rule ``count_params`` follows) and cost nothing.
    """
    h, w = paper_lr_size(upscale) if lr_size is None else lr_size
    c, px, live = num_feat, h * w, genotype.live_nodes()
    block = sum(op_macs(op, len(genotype.op_inputs(node, op)), c, px) for node in live for op in range(NUM_OPS)
                if genotype.op_inputs(node, op))
    block += len(live) * attention_macs(c, px)
    block += _conv_macs(len(genotype.local_inputs()) * c, c, 1, px)  # local feature fusion
    total = _conv_macs(num_in_ch, c, 3, px) + _conv_macs(c, c, 3, px)  # SFENet
    total += sum(_conv_macs(d * c, c, 1, px) for d in range(2, num_blocks + 1))  # dense inter-block 1x1 convs
    total += num_blocks * block
    total += _conv_macs(len(genotype.global_inputs(num_blocks)) * c, c, 1, px) + _conv_macs(c, c, 3, px)  # GFF
    if upscale == 4:  # two x2 stages, the second on the 2x larger map
        total += _conv_macs(c, 4 * c, 3, px) + _conv_macs(c, 4 * c, 3, 4 * px)
    else:
        total += _conv_macs(c, upscale * upscale * c, 3, px)
    return total + _conv_macs(c, num_out_ch, 3, upscale * upscale * px)


def max_macs(num_blocks: int, num_nodes: int, num_feat: int = 64, upscale: int = 2, num_in_ch: int = 3,
             num_out_ch: int = 3, lr_size=None) -> int:
    """MACs of the largest genotype of the space (every op reads every input, all fusion inputs)."""
    return count_macs(Genotype.full(num_nodes), num_blocks, num_feat, upscale, num_in_ch, num_out_ch, lr_size)
