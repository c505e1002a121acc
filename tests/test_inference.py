"""tools/inference.py on tiny networks: whole vs tiled, gray, RGBA, 16-bit, a corrupt file in a folder, --opt."""
import deconas_plugin  # noqa: F401  (torchvision shim and registration, before basicsr)

import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata

from deconas_plugin.archs.carn_arch import CARN
from deconas_plugin.archs.deconas_arch import DeCoNASNet
from deconas_plugin.inference import InferenceError, load_network, upscale_image
from script_runner import run_script
from shared_data import ROOT

GENOTYPE = '7 6 4 3 5 1'  # M = 3: every op, nodes with one and several inputs
SIZES = dict(num_feat=8, num_blocks=2, num_nodes=3, upscale=2)


def psnr(a, b, peak=255.0):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64))**2)
    return float('inf') if mse == 0 else 10 * np.log10(peak**2 / mse)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A tiny DeCoNASNet checkpoint as the project writes it (params + genotype), random weights."""
    torch.manual_seed(0)
    net = DeCoNASNet(GENOTYPE, **SIZES)
    path = tmp_path_factory.mktemp('ckpt') / 'net_g_latest.pth'
    torch.save({'params': net.state_dict(), 'genotype': GENOTYPE}, path)
    return str(path), net.eval()


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """A folder: RGB, gray, RGBA and 16-bit RGB PNGs (LR, 40x48), a JPEG, a corrupt PNG and a text file."""
    folder = tmp_path_factory.mktemp('images')
    bgr = cv2.resize(skdata.astronaut()[::-1][100:260, 120:312, ::-1], (48, 40), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(folder / 'rgb.png'), bgr)
    cv2.imwrite(str(folder / 'photo.jpg'), bgr)
    cv2.imwrite(str(folder / 'gray.png'), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    alpha = np.tile(np.linspace(0, 255, 48, dtype=np.float32), (40, 1)).astype(np.uint8)
    cv2.imwrite(str(folder / 'rgba.png'), np.dstack([bgr, alpha]))
    cv2.imwrite(str(folder / 'deep.png'), bgr.astype(np.uint16) * 257)  # 16 bits, the same picture
    (folder / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'not really a png' * 8)
    (folder / 'notes.txt').write_text('not an image')
    return folder, bgr, alpha


def run_inference(*args):
    """``python tools/inference.py --threads 1 args``, run in this process (exit status, stdout, stderr)."""
    return run_script(osp.join(ROOT, 'tools', 'inference.py'), '--threads', '1', *args)


def test_folder_with_a_corrupt_file(tmp_path, checkpoint, images):
    """Every readable image is written with its layout kept; the corrupt one is named in one line and
    skipped, and the exit status says something failed."""
    folder, bgr, alpha = images
    out = tmp_path / 'out'
    res = run_inference('-i', str(folder), '-o', str(out), '--model', checkpoint[0], '--suffix', 'x2')
    assert res.returncode == 1, res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and 'broken.png' in errors[0] and 'Traceback' not in res.stderr, res.stderr
    assert 'wrote 5 of 6 image(s)' in res.stdout
    assert sorted(p.name for p in out.iterdir()) == ['deep_x2.png', 'gray_x2.png', 'photo_x2.jpg', 'rgb_x2.png',
                                                     'rgba_x2.png']
    rgb = cv2.imread(str(out / 'rgb_x2.png'), cv2.IMREAD_UNCHANGED)
    assert rgb.shape == (80, 96, 3) and rgb.dtype == np.uint8
    # the whole-image output is the network's own output on the image
    net = checkpoint[1]
    x = torch.from_numpy(bgr[:, :, ::-1].astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        ref = (net(x)[0].clamp(0, 1).permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.uint8)
    assert np.abs(rgb.astype(int) - ref).max() <= 1  # one grey level: rounding of float32 sums
    gray = cv2.imread(str(out / 'gray_x2.png'), cv2.IMREAD_UNCHANGED)
    assert gray.shape == (80, 96) and gray.dtype == np.uint8
    rgba = cv2.imread(str(out / 'rgba_x2.png'), cv2.IMREAD_UNCHANGED)
    assert rgba.shape == (80, 96, 4)
    assert np.array_equal(rgba[:, :, :3], rgb)  # the colour goes through the network as without alpha
    bicubic = np.clip(cv2.resize(alpha.astype(np.float32) / 255, (96, 80), interpolation=cv2.INTER_CUBIC), 0, 1)
    assert np.array_equal(rgba[:, :, 3], np.round(bicubic * 255).astype(np.uint8))
    deep = cv2.imread(str(out / 'deep_x2.png'), cv2.IMREAD_UNCHANGED)
    assert deep.shape == (80, 96, 3) and deep.dtype == np.uint16
    assert np.abs(deep / 257.0 - rgb).max() <= 0.51  # the same picture, kept at 16 bits...
    assert (deep % 257 != 0).mean() > 0.9  # ...with its finer levels, not an 8-bit result scaled up


def test_gray_image_is_the_luma_of_the_rgb_output(checkpoint, images):
    folder, bgr, _ = images
    net = checkpoint[1]
    g = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    out = upscale_image(net, g, 2)
    as_rgb = upscale_image(net, np.dstack([g, g, g]), 2).astype(np.float64) / 255  # BGR
    luma = 0.299 * as_rgb[:, :, 2] + 0.587 * as_rgb[:, :, 1] + 0.114 * as_rgb[:, :, 0]
    assert out.ndim == 2 and np.abs(out - luma * 255).max() <= 1.5


def test_tiled_output_is_close_to_the_whole_image(checkpoint, images):
    """Channel attention pools over each tile, so tiles cannot match exactly; with enough context they are
    within 50 dB of the whole-image output, and without context they are visibly worse."""
    _, bgr, _ = images
    net = checkpoint[1]
    whole = upscale_image(net, bgr, 2)
    padded = upscale_image(net, bgr, 2, tile=16, tile_pad=12)
    bare = upscale_image(net, bgr, 2, tile=16, tile_pad=0)
    assert padded.shape == whole.shape == bare.shape
    assert psnr(padded, whole) >= 50
    assert psnr(bare, whole) < psnr(padded, whole)
    odd = upscale_image(net, bgr[:37, :45], 2, tile=16, tile_pad=12)  # tiles cut at the border
    assert odd.shape == (74, 90, 3) and psnr(odd, upscale_image(net, bgr[:37, :45], 2)) >= 50


def test_other_archs_need_their_option_file(tmp_path, images):
    import inference as tool
    folder, _, _ = images
    torch.manual_seed(0)
    carn = CARN(num_feat=8, upscale=2)
    ckpt = tmp_path / 'carn.pth'
    torch.save({'params': carn.state_dict()}, ckpt)
    args = ['-i', str(folder / 'rgb.png'), '-o', str(tmp_path / 'o'), '--model', str(ckpt), '--threads', '1']
    with pytest.raises(InferenceError, match='not a DeCoNASNet checkpoint.*--opt'):
        tool.main(args)
    opt = tmp_path / 'carn.yml'
    opt.write_text('network_g:\n  type: CARN\n  num_feat: 8\n  upscale: 2\n')
    net, _, scale = load_network(str(ckpt), str(opt))
    assert scale == 2
    assert tool.main(args + ['--opt', str(opt), '--ext', 'jpg']) == 0
    assert cv2.imread(str(tmp_path / 'o' / 'rgb.jpg')).shape == (80, 96, 3)
    opt.write_text('network_g:\n  type: CARN\n  num_feat: 16\n  upscale: 2\n')  # not these weights
    with pytest.raises(InferenceError, match='do not fit'):
        tool.main(args + ['--opt', str(opt)])
    with pytest.raises(InferenceError, match='option file not found'):
        tool.main(args + ['--opt', str(tmp_path / 'none.yml')])


def test_bf16_and_the_input_guard(capsys, checkpoint, images):
    folder, bgr, _ = images
    net = checkpoint[1]
    bf16 = upscale_image(net.to(torch.bfloat16), bgr, 2, dtype=torch.bfloat16)
    net.float()
    assert psnr(bf16, upscale_image(net, bgr, 2)) > 30  # bf16 keeps 8 mantissa bits: close, not equal
    # writing into the input folder without a suffix would overwrite the inputs: refused per file
    import inference as tool
    assert tool.main(['-i', str(folder / 'rgb.png'), '-o', str(folder), '--model', checkpoint[0]]) == 1
    assert 'overwrite an input' in capsys.readouterr().err
    assert np.array_equal(cv2.imread(str(folder / 'rgb.png')), bgr)
