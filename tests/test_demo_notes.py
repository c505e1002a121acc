"""The demo report's plain note when a trained method scores below bicubic (per-image differences)."""
import deconas_plugin  # noqa: F401  (torchvision shim before basicsr)

import os
import os.path as osp

import cv2
import numpy as np
import yaml

from deconas_plugin.reporting.demo import below_bicubic_notes, per_image_psnr
from shared_data import ROOT


def _write_test_run(tmp_path, name, gt_dir, outputs):
    """A test option file and the images BasicSR's test would have saved for it."""
    folder = osp.join(ROOT, 'results', name, 'visualization', 'tiny_set')
    os.makedirs(folder)
    for stem, img in outputs.items():
        cv2.imwrite(osp.join(folder, f'{stem}_{name}.png'), img)
    path = tmp_path / f'{name}.yml'
    path.write_text(yaml.safe_dump({'name': name, 'scale': 2, 'datasets': {'test_1': {
        'name': 'tiny_set', 'dataroot_gt': str(gt_dir), 'dataroot_lq': str(gt_dir)}}}))
    return str(path)


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
    test_opts = [('Bicubic', _write_test_run(tmp_path, bic, gt_dir, {'flat': noisy(gts['flat'], 0.6),
                                                                      'busy': noisy(gts['busy'], 12)})),
                 ('CARN', _write_test_run(tmp_path, carn, gt_dir, {'flat': noisy(gts['flat'], 3),
                                                                   'busy': noisy(gts['busy'], 10)}))]
    scores = per_image_psnr(test_opts[1][1])
    assert set(scores) == {'tiny_set'} and set(scores['tiny_set']) == {'flat', 'busy'}
    methods = [{'key': 'bicubic', 'label': 'Bicubic'}, {'key': 'carn', 'label': 'CARN'}]
    notes = below_bicubic_notes(methods, test_opts, 1500)
    assert len(notes) == 1
    bic_scores = per_image_psnr(test_opts[0][1])['tiny_set']
    assert 'CARN scores below bicubic on tiny_set' in notes[0] and 'follows flat' in notes[0]
    assert f"flat {scores['tiny_set']['flat'] - bic_scores['flat']:+.2f}" in notes[0]
    assert f"busy {scores['tiny_set']['busy'] - bic_scores['busy']:+.2f}" in notes[0] and '1,500 iterations' in notes[0]
    # a method above bicubic gets no note
    assert 'demo budget' in notes[0]
    plain = below_bicubic_notes(methods, test_opts, 1000000, demo_budget=False)
    assert len(plain) == 1 and 'demo budget' not in plain[0] and 'follows flat' in plain[0]
    assert below_bicubic_notes(methods, test_opts[::-1], 1500) == []
