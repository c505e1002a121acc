import deconas_plugin  # noqa: F401  (torchvision shim and registries, before basicsr)

import os
import os.path as osp

import cv2
import lmdb
import numpy as np
import pytest
from PIL import Image

from basicsr.data import build_dataset
from basicsr.data.transforms import mod_crop

from deconas_plugin.utils.sr_data import DataToolError, bicubic_downscale

from shared_data import SHARED, need_shared as _need  # noqa: E402  (also puts tools/ on sys.path)
import prepare_benchmark  # noqa: E402
import prepare_train  # noqa: E402
from script_runner import run_script  # noqa: E402

PREPARE_TRAIN, PREPARE_BENCHMARK = prepare_train.__file__, prepare_benchmark.__file__


def _size(path):
    with Image.open(path) as img:
        return img.size, img.mode


def _snapshot(folder):
    return {f: os.stat(osp.join(d, f)).st_mtime_ns for d, _, fs in os.walk(folder) for f in fs}


# ----------------------------------------------------------------------------------------------
# prepare_benchmark


def test_prepare_benchmark_set5_x2(tmp_path, capsys):
    src = _need(osp.join(SHARED, 'Set5', 'HR'))
    out = tmp_path / 'Set5'
    prepare_benchmark.main(['--input', src, '--output', str(out), '--scales', '2'])
    names = sorted(os.listdir(src))
    assert sorted(os.listdir(out / 'GTmod2')) == names == sorted(os.listdir(out / 'LRbicx2'))
    for n in names:
        (w, h), _ = _size(osp.join(src, n))
        (gw, gh), _ = _size(out / 'GTmod2' / n)
        (lw, lh), _ = _size(out / 'LRbicx2' / n)
        assert (gw, gh) == (w - w % 2, h - h % 2)
        assert (lw, lh) == (w // 2, h // 2)
    # LR = MATLAB bicubic of the modcropped HR (the woman image is 228x344)
    hr = mod_crop(cv2.imread(osp.join(src, 'woman.png')), 2)
    assert np.array_equal(cv2.imread(str(out / 'LRbicx2' / 'woman.png')), bicubic_downscale(hr, 2))

    before = _snapshot(out)
    capsys.readouterr()
    prepare_benchmark.main(['--input', src, '--output', str(out), '--scales', '2'])
    assert '0 pairs written, 5 already there' in capsys.readouterr().out
    assert _snapshot(out) == before


def test_prepare_benchmark_keeps_single_channel(tmp_path):
    bridge = osp.join(SHARED, 'Set14', 'HR', 'bridge.png')
    if not osp.isfile(bridge):
        pytest.skip(f'shared datasets not available: {bridge}')
    src = tmp_path / 'in'
    src.mkdir()
    os.symlink(bridge, src / 'bridge.png')
    prepare_benchmark.main(['--input', str(src), '--output', str(tmp_path / 'out'), '--scales', '3'])
    assert _size(tmp_path / 'out' / 'GTmod3' / 'bridge.png')[1] == 'L'
    assert _size(tmp_path / 'out' / 'LRbicx3' / 'bridge.png')[1] == 'L'


def test_prepare_benchmark_missing_input(tmp_path):
    missing = tmp_path / 'no_such_folder'
    out = tmp_path / 'out'
    proc = run_script(PREPARE_BENCHMARK, '--input', str(missing), '--output', str(out), '--scales', '2')
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert proc.returncode == 2 and len(errors) == 1 and str(missing) in errors[0], proc.stderr
    assert 'Traceback' not in proc.stderr and not out.exists()


def test_prepare_benchmark_all_needs_a_data_root(tmp_path, monkeypatch, capsys):
    """--all reads no folder by default: --data-root or $DECONAS_DATA, and a root without a set is named."""
    monkeypatch.delenv('DECONAS_DATA', raising=False)
    with pytest.raises(SystemExit) as exc:
        prepare_benchmark.main(['--all', '--output', str(tmp_path / 'out')])
    assert exc.value.code == 2 and '--all needs --data-root' in capsys.readouterr().err
    (tmp_path / 'root' / 'Set5' / 'HR').mkdir(parents=True)
    monkeypatch.setenv('DECONAS_DATA', str(tmp_path / 'root'))
    with pytest.raises(DataToolError) as exc:
        prepare_benchmark.main(['--all', '--output', str(tmp_path / 'out')])
    assert osp.join(str(tmp_path / 'root'), 'Set14', 'HR') in str(exc.value)
    assert osp.join(str(tmp_path / 'root'), 'Set5', 'HR') not in str(exc.value)
    assert not (tmp_path / 'out').exists()


def test_prepare_benchmark_removes_stale_temp_files(tmp_path):
    src = _need(osp.join(SHARED, 'Set5', 'HR'))
    (tmp_path / 'Set5' / 'LRbicx4').mkdir(parents=True)
    stale = tmp_path / 'Set5' / 'LRbicx4' / '.tmp_abc.part'
    stale.write_bytes(b'half a png')
    prepare_benchmark.main(['--input', src, '--output', str(tmp_path / 'Set5'), '--scales', '4'])
    assert not stale.exists()
    assert len(os.listdir(tmp_path / 'Set5' / 'LRbicx4')) == 5


# ----------------------------------------------------------------------------------------------
# prepare_train


@pytest.fixture(scope='module')
def train_out(tmp_path_factory):
    src = _need(osp.join(SHARED, 'train_small', 'HR'))
    out = tmp_path_factory.mktemp('train') / 'DIV2K'
    args = ['--input', src, '--output', str(out), '--scales', '2', '3', '4', '--crop-size', '96', '--step', '96',
            '--limit', '3', '--val-count', '1', '--n-thread', '1']
    prepare_train.main(args)
    return src, out, args


def _meta(lmdb_path):
    with open(osp.join(lmdb_path, 'meta_info.txt')) as f:
        return [line.split() for line in f if line.strip()]


def test_prepare_train_lmdb_and_meta_info(train_out):
    src, out, _ = train_out
    hr_lmdb = out / 'DIV2K_train_HR_sub.lmdb'
    hr_meta = _meta(hr_lmdb)
    keys = [m[0][:-len('.png')] for m in hr_meta]
    assert keys and all(m[1] in ('(96,96,3)', '(96,96,1)') and m[2] == '1' for m in hr_meta)
    assert sorted(os.listdir(out / 'DIV2K_train_HR_sub')) == [k + '.png' for k in keys]
    env = lmdb.open(str(hr_lmdb), readonly=True, lock=False, readahead=False)
    with env.begin() as txn:
        assert txn.stat()['entries'] == len(keys)
        img = cv2.imdecode(np.frombuffer(txn.get(keys[0].encode()), np.uint8), cv2.IMREAD_UNCHANGED)
    env.close()
    assert img.shape[:2] == (96, 96)
    for s in (2, 3, 4):
        lr_meta = _meta(out / f'DIV2K_train_LR_bicubic_X{s}_sub.lmdb')
        assert [m[0] for m in lr_meta] == [m[0] for m in hr_meta]  # same keys: BasicSR pairs them by key
        assert all(m[1].startswith(f'({96 // s},{96 // s},') for m in lr_meta)


def test_prepare_train_lr_subimages_are_crops_of_whole_image_lr(train_out):
    src, out, _ = train_out
    stem = sorted(os.listdir(src))[0][:-len('.png')]
    hr = mod_crop(cv2.imread(osp.join(src, stem + '.png')), 12)  # lcm(2, 3, 4)
    xs = prepare_train.crop_positions(hr.shape[1], 96, 96)
    y, x = 96, xs[1]  # second row, second column -> index len(xs) + 2
    idx = len(xs) + 2
    hr_sub = cv2.imread(str(out / 'DIV2K_train_HR_sub' / f'{stem}_s{idx:03d}.png'))
    assert np.array_equal(hr_sub, hr[y:y + 96, x:x + 96])
    for s in (2, 3, 4):
        whole = cv2.imread(str(out / 'DIV2K_train_LR_bicubic' / f'X{s}' / f'{stem}x{s}.png'))
        assert np.array_equal(whole, bicubic_downscale(hr, s))
        lr_sub = cv2.imread(str(out / 'DIV2K_train_LR_bicubic' / f'X{s}_sub' / f'{stem}_s{idx:03d}.png'))
        assert np.array_equal(lr_sub, whole[y // s:(y + 96) // s, x // s:(x + 96) // s])


def test_prepare_train_val_split_is_disjoint(train_out):
    src, out, _ = train_out
    names = sorted(os.listdir(src))[:3]
    train_stems = {n[:-len('.png')] for n in names[:2]}
    val_name = names[2]
    keys = [m[0] for m in _meta(out / 'DIV2K_train_HR_sub.lmdb')]
    assert {k.rsplit('_s', 1)[0] for k in keys} == train_stems
    for s in (2, 3, 4):
        assert os.listdir(out / 'DIV2K_val' / f'GTmod{s}') == [val_name]
        (gw, gh), _ = _size(out / 'DIV2K_val' / f'GTmod{s}' / val_name)
        (lw, lh), _ = _size(out / 'DIV2K_val' / f'LRbicx{s}' / val_name)
        assert (gw, gh) == (lw * s, lh * s)


def test_prepare_train_lmdb_feeds_basicsr_dataset(train_out):
    _, out, _ = train_out
    opt = {'name': 'DIV2K', 'type': 'PairedImageDataset', 'phase': 'train', 'scale': 2,
           'dataroot_gt': str(out / 'DIV2K_train_HR_sub.lmdb'),
           'dataroot_lq': str(out / 'DIV2K_train_LR_bicubic_X2_sub.lmdb'),
           'io_backend': {'type': 'lmdb'}, 'gt_size': 64, 'use_hflip': True, 'use_rot': True}
    sample = build_dataset(opt)[0]
    assert tuple(sample['gt'].shape) == (3, 64, 64) and tuple(sample['lq'].shape) == (3, 32, 32)


def test_prepare_train_is_idempotent(train_out, capsys):
    _, out, args = train_out
    before = _snapshot(out)
    capsys.readouterr()
    prepare_train.main(args)
    text = capsys.readouterr().out
    assert '(0 files written)' in text and 'LMDBs built: 0' in text
    assert _snapshot(out) == before


def test_prepare_train_clear_errors(tmp_path):
    proc = run_script(PREPARE_TRAIN, '--input', str(tmp_path / 'missing'), '--output', str(tmp_path / 'out'))
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert proc.returncode == 2 and len(errors) == 1 and 'missing' in errors[0], proc.stderr
    assert 'Traceback' not in proc.stderr and not (tmp_path / 'out').exists()
    src = _need(osp.join(SHARED, 'train_small', 'HR'))
    with pytest.raises(DataToolError) as exc:
        prepare_train.main(['--input', src, '--output', str(tmp_path / 'out'), '--scales', '3', '--crop-size', '100'])
    assert 'multiples' in str(exc.value)
    assert not (tmp_path / 'out').exists()


def test_prepare_train_lmdb_compression_level(tmp_path, capsys):
    """--lmdb-compression 0 stores the same pixels at PNG level 0; a rerun at another level rebuilds."""
    src = _need(osp.join(SHARED, 'train_small', 'HR'))
    out = tmp_path / 'out'
    args = ['--input', src, '--output', str(out), '--scales', '2', '--crop-size', '96', '--step', '96',
            '--limit', '1', '--n-thread', '1', '--name', 'lvl']
    prepare_train.main(args)
    hr_lmdb = out / 'lvl_train_HR_sub.lmdb'

    def images():
        env = lmdb.open(str(hr_lmdb), readonly=True, lock=False, readahead=False)
        with env.begin() as txn:
            found = {m[0]: cv2.imdecode(np.frombuffer(txn.get(m[0][:-len('.png')].encode()), np.uint8),
                                        cv2.IMREAD_UNCHANGED) for m in _meta(hr_lmdb)}
        env.close()
        return found

    level1 = images()
    assert all(m[2] == '1' for m in _meta(hr_lmdb))
    size1 = os.path.getsize(hr_lmdb / 'data.mdb')
    capsys.readouterr()
    prepare_train.main(args + ['--lmdb-compression', '0'])
    assert 'LMDBs built: 2' in capsys.readouterr().out
    assert all(m[2] == '0' for m in _meta(hr_lmdb))
    level0 = images()
    assert level0.keys() == level1.keys() and all(np.array_equal(level0[k], level1[k]) for k in level0)
    assert os.path.getsize(hr_lmdb / 'data.mdb') > size1
    with pytest.raises(DataToolError) as exc:
        prepare_train.main(args + ['--lmdb-compression', '10'])
    assert '--lmdb-compression' in str(exc.value) and '10' in str(exc.value)


def test_gpu_evidence_prepare_needs_a_data_root(monkeypatch, capsys):
    """``tools/gpu_evidence.py --prepare`` reads no folder by default either: --data-root or $DECONAS_DATA."""
    import gpu_evidence
    monkeypatch.delenv('DECONAS_DATA', raising=False)
    with pytest.raises(SystemExit) as exc:
        gpu_evidence.parse_args(['--prepare'])
    assert exc.value.code == 2 and '--prepare needs --data-root' in capsys.readouterr().err
    monkeypatch.setenv('DECONAS_DATA', '/some/where')
    assert gpu_evidence.parse_args(['--prepare'])[1].data_root == '/some/where'
    assert gpu_evidence.parse_args(['--prepare', '--data-root', 'x'])[1].data_root == 'x'
