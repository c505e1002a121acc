import deconas_plugin  # noqa: F401  (registers the archs; must come first)

import pytest
import torch
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY

from deconas_plugin.archs.carn_arch import CARN
from deconas_plugin.archs.rdn_arch import RDN

TINY_RDN = dict(num_feat=8, num_blocks=2, num_layers=2, growth_rate=8)
TINY_CARN = dict(num_feat=8)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


# --- parameter counts of the published configurations -------------------------------------------

def test_rdn_x2_param_count():
    assert n_params(RDN(upscale=2)) == 22_123_395


def test_carn_x2_single_scale_param_count():
    assert n_params(CARN(upscale=2)) == 964_163


@pytest.mark.parametrize('upscale', [2, 3, 4])
def test_carn_multi_scale_param_count(upscale):
    # all three upsamplers exist whatever scale forward uses
    assert n_params(CARN(upscale=upscale, multi_scale=True)) == 1_591_939


@pytest.mark.parametrize('arch', [RDN, CARN])
def test_mean_shift_is_a_buffer_not_a_parameter(arch):
    model = arch(**(TINY_RDN if arch is RDN else TINY_CARN))
    assert 'mean' in dict(model.named_buffers())
    assert not any('mean' in name for name, _ in model.named_parameters())
    assert 'mean' not in model.state_dict()


# --- shapes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize('upscale', [2, 3, 4])
def test_rdn_forward_shape(upscale):
    model = RDN(upscale=upscale, **TINY_RDN).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 7, 9))
    assert out.shape == (2, 3, 7 * upscale, 9 * upscale)


@pytest.mark.parametrize('multi_scale', [False, True])
@pytest.mark.parametrize('upscale', [2, 3, 4])
def test_carn_forward_shape(upscale, multi_scale):
    model = CARN(upscale=upscale, multi_scale=multi_scale, **TINY_CARN).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 7, 9))
    assert out.shape == (2, 3, 7 * upscale, 9 * upscale)


def test_carn_multi_scale_uses_the_upsampler_of_upscale():
    model = CARN(upscale=3, multi_scale=True, **TINY_CARN).eval()
    used = []
    for name in ('up2', 'up3', 'up4'):
        getattr(model.upsample, name).register_forward_hook(lambda m, i, o, name=name: used.append(name))
    with torch.no_grad():
        model(torch.rand(1, 3, 5, 5))
    assert used == ['up3']


def test_full_size_carn_forward_shape():
    with torch.no_grad():
        out = CARN(upscale=4).eval()(torch.rand(1, 3, 7, 9))
    assert out.shape == (1, 3, 28, 36)


# --- normalisation and training -------------------------------------------------------------------

@pytest.mark.parametrize('arch', [RDN, CARN])
def test_zero_weights_output_the_mean(arch):
    """With every weight at zero the network body outputs 0, so the output is rgb_mean."""
    rgb_mean = (0.1, 0.2, 0.3)
    model = arch(upscale=2, img_range=255., rgb_mean=rgb_mean, **(TINY_RDN if arch is RDN else TINY_CARN))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        out = model(torch.rand(1, 3, 4, 5))
    assert torch.allclose(out, torch.tensor(rgb_mean).view(1, 3, 1, 1).expand_as(out))


@pytest.mark.parametrize('arch', [RDN, CARN])
def test_backward_and_dtype(arch):
    model = arch(upscale=2, **(TINY_RDN if arch is RDN else TINY_CARN))
    model(torch.rand(1, 3, 6, 5)).mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    model = model.double()
    assert model(torch.rand(1, 3, 6, 5, dtype=torch.float64)).dtype == torch.float64


# --- argument checks --------------------------------------------------------------------------------

@pytest.mark.parametrize('arch', [RDN, CARN])
@pytest.mark.parametrize('upscale', [1, 5, 8])
def test_bad_upscale_raises(arch, upscale):
    with pytest.raises(ValueError, match=rf'upscale={upscale}.*\(2, 3, 4\)'):
        arch(upscale=upscale)


def test_carn_multi_scale_bad_upscale_raises():
    with pytest.raises(ValueError, match='upscale=8'):
        CARN(upscale=8, multi_scale=True)


@pytest.mark.parametrize('arch', [RDN, CARN])
def test_bad_rgb_mean_length_raises(arch):
    with pytest.raises(ValueError, match='rgb_mean'):
        arch(num_in_ch=1, num_out_ch=1, rgb_mean=(0.4, 0.4, 0.4))


# --- registry -------------------------------------------------------------------------------------

def test_registered_in_basicsr():
    assert ARCH_REGISTRY.get('RDN') is RDN
    assert ARCH_REGISTRY.get('CARN') is CARN


@pytest.mark.parametrize('opt', [
    dict(type='RDN', upscale=3, **TINY_RDN),
    dict(type='CARN', upscale=3, multi_scale=True, **TINY_CARN),
])
def test_build_network_from_options(opt):
    model = build_network(opt).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 7, 9)).shape == (1, 3, 21, 27)
