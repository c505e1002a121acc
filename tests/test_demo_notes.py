"""The demo report's plain note when a trained method scores below bicubic (per-image differences), the results
table's caption, the report's first screen and the embedded splits."""
import deconas_plugin  # noqa: F401  (torchvision shim before basicsr)

import os
import os.path as osp

import cv2
import numpy as np
import pytest

from deconas_plugin.reporting.markdown import below_bicubic_notes
from deconas_plugin.reporting.metrics import per_image_metrics
from shared_data import ROOT


def _per_image_of_saved_outputs(name, gt_dir, outputs):
    """Per-image PSNR-Y / SSIM-Y (``per_image_metrics``) of the images BasicSR's test would have saved for a
    test run ``name``."""
    folder = osp.join(ROOT, 'results', name, 'visualization', 'tiny_set')
    os.makedirs(folder)
    for stem, img in outputs.items():
        cv2.imwrite(osp.join(folder, f'{stem}_{name}.png'), img)
    return {'tiny_set': per_image_metrics({'name': name, 'results_dir': osp.join(ROOT, 'results', name)},
                                          {'name': 'tiny_set', 'dataroot_gt': str(gt_dir)}, 2)}


def test_note_names_the_image_that_pulls_the_mean_down(tmp_path, experiment_name):
    rng = np.random.default_rng(0)
    gt_dir = tmp_path / 'gt'
    gt_dir.mkdir()
    gts = {'flat': np.full((24, 24), 120, np.uint8), 'busy': rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)}
    for stem, img in gts.items():
        cv2.imwrite(str(gt_dir / f'{stem}.png'), img)

    def noisy(img, sigma):
        return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).round().astype(np.uint8)

    bic, carn = experiment_name('bic'), experiment_name('carn')
    rows = [{'label': 'Bicubic', 'arch': 'Bicubic', 'per_image': _per_image_of_saved_outputs(
                bic, gt_dir, {'flat': noisy(gts['flat'], 0.6), 'busy': noisy(gts['busy'], 12)})},
            {'label': 'CARN', 'arch': 'CARN', 'per_image': _per_image_of_saved_outputs(
                carn, gt_dir, {'flat': noisy(gts['flat'], 3), 'busy': noisy(gts['busy'], 10)})}]
    scores = {k: v['psnr'] for k, v in rows[1]['per_image']['tiny_set'].items()}
    assert set(rows[1]['per_image']) == {'tiny_set'} and set(scores) == {'flat', 'busy'}
    notes = below_bicubic_notes(rows, 1500)
    assert len(notes) == 1
    bic_scores = {k: v['psnr'] for k, v in rows[0]['per_image']['tiny_set'].items()}
    assert 'CARN scores below bicubic on tiny_set' in notes[0] and 'follows flat' in notes[0]
    assert f"flat {scores['flat'] - bic_scores['flat']:+.2f}" in notes[0]
    assert f"busy {scores['busy'] - bic_scores['busy']:+.2f}" in notes[0] and '1,500 iterations' in notes[0]
    assert 'demo budget' in notes[0]
    plain = below_bicubic_notes(rows, 1000000, demo_budget=False)
    assert len(plain) == 1 and 'demo budget' not in plain[0] and 'follows flat' in plain[0]
    # a method above bicubic gets no note
    swapped = [dict(rows[0], per_image=rows[1]['per_image']), dict(rows[1], per_image=rows[0]['per_image'])]
    assert below_bicubic_notes(swapped, 1500) == []


# ------------------------------------------------------------------------ results caption, first screen
def _row(label, arch, psnr, params=None, spread=None):
    return {'label': label, 'arch': arch, 'scale': 2, 'params': params, 'metrics': {'photos': {'psnr': psnr,
                                                                                              'ssim': 0.9}},
            'per_image': {'photos': {f'img{i}': {'psnr': psnr, 'ssim': 0.9} for i in range(7)}},
            'seed_spread': None if spread is None else {'seeds': [10, 11], 'psnr_spread': spread}}


def test_caption_says_which_network_is_not_above_bicubic():
    from deconas_plugin.reporting.markdown import results_table, table_caption
    from deconas_plugin.reporting.metrics import gains_over_bicubic
    rows = [_row('Bicubic', 'Bicubic', 30.0), _row('CARN', 'CARN', 29.9, 50_000),
            _row('Found', 'DeCoNASNet', 30.4, 20_000)]
    gains_over_bicubic(rows, ['photos'])
    assert rows[0]['gain_over_bicubic'] is None
    assert rows[1]['gain_over_bicubic']['photos'] == -0.1 and rows[2]['gain_over_bicubic']['photos'] == 0.4
    caption = table_caption(rows, ['photos'], 'Both trained alike.', None)
    assert 'photos: 7 images' in caption and 'Both trained alike.' in caption
    assert '**Not above bicubic:** CARN on photos (-0.10 dB).' in caption and 'Found on' not in caption
    assert 'Seed spread: not measured for this setting' in caption
    table = results_table(rows, ['photos'], caption)
    assert table.startswith(caption + '\n\n| Method | Scale | Params | photos |')
    assert '| CARN | x2 | 50,000 | 29.90/0.9000 | -0.10 | not measured |' in table
    assert '| Bicubic | x2 | - | 30.00/0.9000 | - | - |' in table
    rows[1]['metrics']['photos']['psnr'] = 30.2
    rows[1]['seed_spread'] = rows[2]['seed_spread'] = {'seeds': [10, 11], 'psnr_spread': 0.05}
    gains_over_bicubic(rows, ['photos'])
    spread = {'seeds': [10, 11], 'date': '2026-01-01', 'machine': 'a 2-core CPU', 'file': 'spread.json', 'note': None}
    caption = table_caption(rows, ['photos'], None, spread)
    assert 'Not above' not in caption and 'Every trained network is above bicubic on every test mean.' in caption
    assert 'measured 2026-01-01 on a 2-core CPU (`spread.json`)' in caption
    assert '| +0.20 | 0.050 (seeds 10, 11) |' in results_table(rows, ['photos'], caption)


def _report(signal, spreads=(None, None)):
    from deconas_plugin.reporting.metrics import gains_over_bicubic
    rows = [_row('Bicubic', 'Bicubic', 30.0), _row('CARN (C=16)', 'CARN', 30.3, 50_000, spreads[0]),
            _row('DeCoNASNet (found)', 'DeCoNASNet', 30.5, 20_000, spreads[1])]
    gains_over_bicubic(rows, ['photos'])
    return {'scale': 2, 'search': {'space': {'num_blocks': 2, 'num_nodes': 3, 'num_feat': 16}, 'history_rows': 300,
                                   'distinct_genotypes': 40, 'last_iter': 800, 'alpha': 1.0, 'penalty': 'params',
                                   'signal': signal, 'entropy': {'drop': 0.5}},
            'genotype': {'decimal': '2 3 1 2 0 2', 'bits': '010 011 001 010 000 010', 'params': 20_000,
                         'derive': {'samples': 100}},
            'results': {'test_sets': ['photos'], 'rows': rows}}


def test_first_screen_answers_in_numbers():
    from deconas_plugin.reporting.markdown import first_screen
    noise = {'full_psnr': 30.01, 'empty_psnr': 30.0, 'median_snr': 0.4, 'phases': 16, 'learned_from_noise': True}
    lines = first_screen(_report(noise))
    text = '\n'.join(lines)
    assert 'N = 2 blocks x M = 3 nodes, C = 16 features (2^18 = 262,144 genotypes)' in lines[0]
    assert '300 genotypes (40 distinct) over 800 child iterations' in lines[0]
    assert '`2 3 1 2 0 2`, a DeCoNASNet of 20,000 parameters (best reward of 100 genotypes' in lines[1]
    assert 'DeCoNASNet (found) 30.50 dB (20,000 params, +0.50 dB over bicubic)' in text
    assert 'CARN (C=16) 30.30 dB (50,000 params, +0.30 dB over bicubic)' in text and 'Bicubic 30.00 dB' in text
    assert 'Found minus CARN with 0.40x its parameters: +0.20 dB (no seed spread measured' in text
    assert lines[-1].startswith('**Better than chance?** No: ') and 'median SNR of one reward 0.40' in lines[-1]
    # with seed spreads: the difference is weighed against them
    text = '\n'.join(first_screen(_report(noise, spreads=(0.05, 0.3))))
    assert '+0.20 dB, within the seed spreads (0.300 and 0.050 dB)' in text and 'seed spread 0.300 dB' in text
    text = '\n'.join(first_screen(_report(noise, spreads=(0.05, 0.1))))
    assert '+0.20 dB, larger than the seed spreads' in text
    strong = dict(noise, full_psnr=30.5, median_snr=5.0, learned_from_noise=False)
    assert first_screen(_report(strong))[-1].startswith('**Better than chance?** Possibly: ')
    # a low SNR of one reward with a clear gap: the controller averages many rewards (measured at C = 32)
    weak = first_screen(_report(dict(strong, median_snr=2.0)))[-1]
    assert weak.startswith('**Better than chance?** Possibly: ') and 'ranks two cells unreliably' in weak
    flat = dict(strong, full_psnr=30.05)  # cells that barely differ on the shared weights
    assert first_screen(_report(flat))[-1].startswith('**Better than chance?** Not shown: ')
    assert 'Not measured' in first_screen(_report(None))[-1]


def test_embedded_splits_are_bundled_disjoint_photos():
    from deconas_plugin.utils.embedded_data import SPLITS, UNUSED, bundled_path
    names = [n for split in SPLITS.values() for n in split]
    assert len(names) == len(set(names))  # no image in two splits
    assert len(SPLITS['test']) >= 6 and not set(SPLITS['test']) & set(UNUSED)
    for name in names:
        assert osp.isfile(bundled_path(name))  # a file of the scikit-image wheel: no download
    with pytest.raises(ValueError, match="unknown embedded photo 'eagle'"):
        bundled_path('eagle')
