"""Tests of the report tools: tools/complexity.py, tools/draw_genotype.py, tools/export_onnx.py."""
import deconas_plugin  # noqa: F401  (torchvision shim and arch registration, before basicsr)

import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from deconas_plugin.archs.deconas_arch import DeCoNASNet
from deconas_plugin.genotype import PAPER_GENOTYPE, Genotype
from deconas_plugin.reporting import complexity_table as ct
from deconas_plugin.genotype_source import GenotypeSourceError, genotype_from_checkpoint, genotype_from_option
from deconas_plugin.reporting.draw import draw_genotype, figure_pixels
from script_runner import run_script

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(ROOT, 'tools')
TINY = dict(num_feat=8, num_blocks=2, num_nodes=3)
TINY_GENOTYPE = '7 6 4 3 5 1'  # M = 3, every op and both node kinds (one and several inputs)


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f'tool_{name}', osp.join(TOOLS, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(name, *args):
    """``python tools/<name>.py args``, run in this process (exit status, stdout, stderr)."""
    return run_script(osp.join(TOOLS, f'{name}.py'), *args)


# ------------------------------------------------------------------------------------- complexity
def test_paper_lr_sizes():
    assert ct.lr_size(2) == (360, 640)
    assert ct.lr_size(3) == (240, 427)  # 1280 / 3 = 426.67, rounded to nearest
    assert ct.lr_size(4) == (180, 320)
    assert ct.lr_size(2, (1920, 1080)) == (540, 960)


def test_paper_deconasnet_x2_complexity():
    row = ct.network_row('paper', {'type': 'DeCoNASNet', 'genotype': str(PAPER_GENOTYPE), 'upscale': 2})
    assert row['params'] == 1_693_251
    assert (row['lr_w'], row['lr_h']) == (640, 360)
    assert row['macs'] > 0
    assert row['macs_method'].startswith('scaled')
    # Equal to mmengine's direct count on the whole 640x360 input (checked once; it takes a minute).
    assert row['macs'] == 382_899_027_968
    table = ct.format_table([row])
    assert '| paper | DeCoNASNet | x2 | 1,693,251 | 640x360 | 382.9 |' in table


def test_mac_extrapolation_equals_direct_count():
    # DeCoNASNet has channel attention: a constant MAC term (1x1 convs on the pooled map) besides
    # the h*w one; the fit a*h*w + d must reproduce the direct count exactly.
    model = DeCoNASNet(TINY_GENOTYPE, **TINY).eval()
    target = (52, 70)
    scaled = ct.model_complexity(model, target, method='scaled')
    assert scaled['macs'] == ct.count_macs(model, *target)
    assert 'a*h*w + d' in scaled['macs_method']


def test_mac_extrapolation_unpadded_and_strided():
    unpadded = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 3))  # (h-2)(w-2) terms
    res = ct.model_complexity(unpadded, (60, 90), method='auto')
    assert res['macs'] == ct.count_macs(unpadded, 60, 90)
    assert 'a*h*w + b*h + c*w + d' in res['macs_method']
    strided = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.Conv2d(4, 3, 3, stride=3))  # floor divisions
    res = ct.model_complexity(strided, (61, 83), method='auto')
    assert res['macs'] == ct.count_macs(strided, 61, 83)
    assert res['macs_method'] == 'direct'
    with pytest.raises(ct.ComplexityError):
        ct.model_complexity(strided, (61, 83), method='scaled')


def test_arch_spec_parsing():
    assert ct.parse_arch_spec('EDSR:num_in_ch=3,num_out_ch=3,num_feat=64,num_block=16,upscale=2') == dict(
        type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=64, num_block=16, upscale=2)
    opt = ct.parse_arch_spec('DeCoNASNet:genotype=7,6,4,3,0,2,2,3,4,1,upscale=3,rgb_mean=[0.5,0.5,0.5]')
    assert opt == dict(type='DeCoNASNet', genotype='7,6,4,3,0,2,2,3,4,1', upscale=3, rgb_mean=[0.5, 0.5, 0.5])
    assert ct.parse_arch_spec('CARN:multi_scale=true')['multi_scale'] is True
    for bad in ('', '3x:a=1', 'EDSR:num_feat'):
        with pytest.raises(ct.ComplexityError):
            ct.parse_arch_spec(bad)
    with pytest.raises(ct.ComplexityError, match='unknown arch'):
        ct.build_network({'type': 'NoSuchNet'})
    with pytest.raises(ct.ComplexityError, match='cannot build'):
        ct.build_network({'type': 'EDSR', 'no_such_arg': 1})


def test_complexity_cli_option_file_and_json(tmp_path):
    opt = tmp_path / 'tiny.yml'
    opt.write_text(f'name: tiny\nscale: 2\nnetwork_g:\n  type: DeCoNASNet\n  genotype: "{TINY_GENOTYPE}"\n'
                   '  num_feat: 8\n  num_blocks: 2\n  num_nodes: 3\n  upscale: 2\n')
    out = tmp_path / 'c.json'
    tool = load_tool('complexity')
    assert tool.main([str(opt), '--arch', 'Bicubic:upscale=2', '--hr-size', '96', '64', '--json', str(out)]) == 0
    rows = json.loads(out.read_text())['rows']
    assert rows[0]['network'] == 'tiny: network_g'
    assert rows[0]['params'] == sum(p.numel() for p in DeCoNASNet(TINY_GENOTYPE, **TINY).parameters())
    assert (rows[0]['lr_w'], rows[0]['lr_h']) == (48, 32)
    assert rows[1]['params'] == 0 and rows[1]['macs'] is None  # interpolation: nothing to count
    assert not [p for p in os.listdir(tmp_path) if p.startswith('.tmp_')]


@pytest.mark.parametrize('tool, args, words', [
    ('complexity', ['--arch', 'NoSuchNet'], 'unknown arch'),
    ('draw_genotype', ['--genotype', '1 2', '-o', 'never.png'], 'as a genotype'),
    ('export_onnx', ['--genotype', '7 6 4', '--weights', 'no/such.pth', '-o', 'never.onnx'], 'not found'),
])
def test_tool_user_error_is_one_line(tmp_path, monkeypatch, tool, args, words):
    monkeypatch.chdir(tmp_path)
    res = run_tool(tool, *args)
    assert res.returncode == 2, (tool, args, res.stderr)
    assert words in res.stderr and 'Traceback' not in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert os.listdir(tmp_path) == []  # nothing written


@pytest.mark.parametrize('content, words', [
    (None, 'option file not found'),
    ('name: [unclosed\n', 'not valid YAML'),
    ('- just\n- a list\n', 'is not a YAML mapping'),
])
def test_tools_name_a_bad_option_file(tmp_path, monkeypatch, content, words):
    """Every tool that reads an option file says the same thing about a bad one, in one line."""
    path = tmp_path / 'bad.yml'
    if content is not None:
        path.write_text(content)
    work = tmp_path / 'work'
    work.mkdir()
    monkeypatch.chdir(work)
    for tool, args in (('complexity', [str(path)]), ('draw_genotype', ['--opt', str(path), '-o', 'never.png']),
                       ('export_onnx', ['-opt', str(path), '-o', 'never.onnx']), ('derive', ['-opt', str(path)])):
        res = run_tool(tool, *args)
        assert res.returncode == 2, (tool, res.stdout[-2000:], res.stderr[-2000:])
        assert words in res.stderr and str(path) in res.stderr and 'Traceback' not in res.stderr, (tool, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, (tool, res.stderr)
        assert os.listdir(work) == [], tool  # nothing written


def test_export_onnx_without_the_onnx_extra(tmp_path, monkeypatch):
    """Without onnx/onnxruntime, a bad option file is still named first (in this process, the two
    modules hidden), and a good network gets the one-line 'not installed' error with the install
    hint (in a fresh interpreter where a sitecustomize hides them before anything is imported)."""
    monkeypatch.setitem(sys.modules, 'onnx', None)
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)
    res = run_tool('export_onnx', '-opt', str(tmp_path / 'missing.yml'), '-o', str(tmp_path / 'never.onnx'))
    assert res.returncode == 2 and 'option file not found' in res.stderr, res.stderr
    monkeypatch.undo()

    hide = tmp_path / 'hide'
    hide.mkdir()
    (hide / 'sitecustomize.py').write_text("import sys\nsys.modules['onnx'] = None\nsys.modules['onnxruntime'] = None\n")
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(hide), os.environ.get('PYTHONPATH', '')])}
    res = subprocess.run([sys.executable, osp.join(TOOLS, 'export_onnx.py'), '--genotype', TINY_GENOTYPE,
                          '--num-feat', '8', '--num-blocks', '2', '-o', str(tmp_path / 'n.onnx')],
                         capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert res.returncode == 2 and 'onnx and onnxruntime not installed' in res.stderr, res.stderr
    assert 'requirements-onnx.txt' in res.stderr and 'Traceback' not in res.stderr
    assert not (tmp_path / 'n.onnx').exists()


# ------------------------------------------------------------------------------------------- draw
def _check_png(path, genotype):
    with Image.open(path) as im:
        assert im.format == 'PNG'
        assert im.size == figure_pixels(Genotype.parse(genotype))
        gray = np.asarray(im.convert('L'), dtype=np.float32)
    assert gray.std() > 15  # drawn, not blank
    assert (gray < 128).mean() > 0.01  # a fair amount of dark lines and text


@pytest.mark.parametrize('genotype', [str(PAPER_GENOTYPE), '7 6 4 3 0 2 2 3 4 1 | 1 0 1 1 | 1 1 0 1', '7 0 0'])
def test_draw_genotype_png(tmp_path, genotype):
    path = str(tmp_path / 'cell.png')
    assert draw_genotype(genotype, path) == path
    _check_png(path, genotype)
    assert os.listdir(tmp_path) == ['cell.png']  # no temporary file left


def test_draw_fusion_genotype_is_taller():
    plain, fused = figure_pixels(PAPER_GENOTYPE), figure_pixels(Genotype.parse('7 6 4 3 0 2 2 3 4 1 | 1 0 1 1 | 1 1 0 1'))
    assert fused[1] > plain[1]


def test_genotype_from_checkpoint(tmp_path):
    # 1. A 'genotype' entry wins.
    net = DeCoNASNet(TINY_GENOTYPE, **TINY)
    path = str(tmp_path / 'with_entry.pth')
    torch.save({'params': net.state_dict(), 'genotype': TINY_GENOTYPE}, path)
    assert genotype_from_checkpoint(path)[0] == Genotype.parse(TINY_GENOTYPE)
    # 2. Shapes that fix the genotype (every op reads none or all earlier features).
    for g in ('7 5 5 0 0 0', '7 5 5 3 3 3 | 1 1 1 | 0 0'):
        net = DeCoNASNet(g, **TINY)
        path = str(tmp_path / 'unique.pth')
        torch.save({'params': net.state_dict()}, path)
        assert genotype_from_checkpoint(path)[0] == Genotype.parse(g, num_blocks=2)
    # 3. Ambiguous shapes: a clear error, unless the experiment's option file fits.
    exp = tmp_path / 'exp'
    os.makedirs(exp / 'models')
    path = str(exp / 'models' / 'net_g_5.pth')
    torch.save({'params': DeCoNASNet(TINY_GENOTYPE, **TINY).state_dict()}, path)
    with pytest.raises(GenotypeSourceError, match='node 2 sep_conv3x3 reads 1 of x_0..x_1'):
        genotype_from_checkpoint(path)
    (exp / 'exp.yml').write_text(f'network_g:\n  type: DeCoNASNet\n  genotype: "{TINY_GENOTYPE}"\n'
                                 '  num_feat: 8\n  num_blocks: 2\n  num_nodes: 3\n')
    g, source = genotype_from_checkpoint(path)
    assert g == Genotype.parse(TINY_GENOTYPE) and 'exp.yml' in source
    assert genotype_from_option(str(exp / 'exp.yml'))[0] == g
    # 4. Not a DeCoNASNet.
    torch.save({'params': nn.Conv2d(3, 3, 3).state_dict()}, str(tmp_path / 'conv.pth'))
    with pytest.raises(GenotypeSourceError, match='not a DeCoNASNet'):
        genotype_from_checkpoint(str(tmp_path / 'conv.pth'))


def test_draw_tool_from_checkpoint(tmp_path):
    path = str(tmp_path / 'net.pth')
    torch.save({'params': DeCoNASNet('7 5 5 0 0 0', **TINY).state_dict()}, path)
    out = str(tmp_path / 'cell.png')
    assert load_tool('draw_genotype').main(['--ckpt', path, '-o', out]) == 0
    _check_png(out, '7 5 5 0 0 0')


# --------------------------------------------------------------------------------------- export
def test_export_onnx_tiny_dynamic_hw(tmp_path):
    pytest.importorskip('onnx')
    pytest.importorskip('onnxruntime')
    tool = load_tool('export_onnx')
    model = DeCoNASNet(TINY_GENOTYPE, **TINY).eval()
    path = tool.export(model, str(tmp_path / 'tiny.onnx'), opset=17)
    img = tool.load_test_image(None, 2, max_size=40)  # the astronaut, downscaled x2, centre crop
    inputs = tool.check_inputs(img)
    results = tool.compare(model, path, inputs)
    assert [r[0][2:] for r in results] == [(40, 40), (33, 27)]  # two different heights and widths
    assert [r[1][2:] for r in results] == [(80, 80), (66, 54)]
    assert all(r[2] <= 1e-4 for r in results), results
    assert sorted(os.listdir(tmp_path)) == ['tiny.onnx']


def test_export_onnx_cli_with_weights(tmp_path):
    pytest.importorskip('onnxruntime')
    net = DeCoNASNet(TINY_GENOTYPE, **TINY)
    weights = str(tmp_path / 'net.pth')
    torch.save({'params': net.state_dict(), 'params_ema': net.state_dict()}, weights)
    tool = load_tool('export_onnx')
    out = str(tmp_path / 'o' / 'tiny.onnx')
    args = ['--genotype', TINY_GENOTYPE, '--num-feat', '8', '--num-blocks', '2', '--weights', weights,
            '--max-size', '24', '-o', out]
    assert tool.main(args) == 0
    assert osp.isfile(out)
    # Weights of another genotype: a clear error (exit 2), nothing written.
    other = str(tmp_path / 'other.pth')
    torch.save({'params': DeCoNASNet('7 7 7 7 7 7', **TINY).state_dict()}, other)
    out2 = str(tmp_path / 'o' / 'other.onnx')
    with pytest.raises(tool.ExportError, match='do not fit this DeCoNASNet'):
        tool.main(args[:-4] + ['--weights', other, '-o', out2])
    assert not osp.exists(out2)


def test_export_onnx_missing_extra_is_explained(monkeypatch):
    tool = load_tool('export_onnx')
    monkeypatch.setattr(tool.importlib.util, 'find_spec', lambda name: None)
    with pytest.raises(tool.ExportError, match='requirements-onnx.txt'):
        tool.check_onnx_installed()
