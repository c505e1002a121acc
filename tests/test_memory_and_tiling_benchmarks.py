"""`benchmarks/activation_memory.py` (bytes autograd saves for backward, extrapolated) and `benchmarks/tiling.py`."""
import torch
from torch import nn

from benchmarks.activation_memory import SIZES, measure, saved_bytes


def test_saved_bytes_counts_each_saved_storage_once():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.rand(1, 3, 8, 8)
    # conv2d saves its input (3*8*8 floats) and weight (4*3*3*3); relu its output (4*8*8): 4 bytes each
    assert saved_bytes(lambda: torch.relu(conv(x))) == 4 * (3 * 8 * 8 + 4 * 3 * 3 * 3 + 4 * 8 * 8)
    # the same input used twice is one storage
    assert saved_bytes(lambda: conv(x) + conv(x)) == 4 * (3 * 8 * 8 + 4 * 3 * 3 * 3)
    with torch.no_grad():
        assert saved_bytes(lambda: torch.relu(conv(x))) == 0


def test_measure_extrapolates_the_affine_fit():
    row, = measure(batch=4, patch=64, which=lambda label: label.startswith('CARN'))
    (n0, y0), (n1, y1), _ = row['counted']
    assert [n for n, _ in row['counted']] == [b * s * s for b, s in SIZES]
    assert row['activations'] == y0 + (y1 - y0) / (n1 - n0) * (4 * 64 * 64 - n0)
    assert 6 * y1 < row['activations'] < 8 * y1  # 8 times the second size's pixels, the weights saved once
    assert row['weights_grads_adam'] == 4 * row['weights'] > 0


def test_tiling_benchmark_compares_tiles_with_the_whole_output():
    """``benchmarks/tiling.py``: a context that covers the whole image reproduces it; none leaves seams."""
    import deconas_plugin  # noqa: F401
    from basicsr.archs import build_network

    from benchmarks.tiling import markdown, measure
    torch.manual_seed(0)
    net = build_network({'type': 'DeCoNASNet', 'genotype': '7 5 3', 'num_blocks': 2, 'num_nodes': 2,
                         'num_feat': 8, 'upscale': 2}).eval()
    img = (torch.rand(24, 20, 3) * 255).to(torch.uint8).numpy()
    rows = measure(net, 2, {'noise': img}, tiles=[8], pads=[0, 24])
    no_context, all_context = rows
    assert all_context['psnr']['noise'] == float('inf') and all_context['max_diff'] == 0
    assert no_context['psnr']['noise'] < float('inf') and no_context['max_diff'] > 0
    assert markdown(rows).splitlines()[2].startswith('| 8 | 0 | ')
