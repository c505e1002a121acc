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
