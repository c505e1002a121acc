"""``benchmarks/activation_memory.py``: the bytes autograd saves for backward, and their extrapolation."""
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
