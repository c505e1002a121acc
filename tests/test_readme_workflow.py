"""The README's workflow runs as written: its fenced block (after the ``<!-- workflow: ... -->`` marker)
is read from README.md and run command by command, in order, on tiny data.

What the test changes, and nothing else: the ``<...>`` placeholders become tiny image folders (the
embedded photos), the experiment names get a unique prefix, every option file the block names is a
tiny copy (same path under a temporary project folder: a few iterations, tiny widths, batch 2, one
process), ``tools/prepare_train.py`` cuts 48-px sub-images (the photos are 96 px), and
``tools/derive.py`` fills in the tiny copies of its templates (it reads them from the project
otherwise). The commands run in that temporary folder, whose ``experiments/`` is the project's (where
BasicSR writes), so every relative path of the block resolves as it would for a user (the copies'
dataset paths are absolute, in that folder).
"""
import os
import os.path as osp
import re
import shlex
import subprocess
import sys

import cv2
import yaml

from conftest import new_experiment_name, remove_experiment
from script_runner import run_script
from shared_data import ROOT
from tiny_options import TINY_SUPERNET

MARKER = '<!-- workflow:'
# The scripts of the block, in order: prepare, search, derive, retrain, test, inference, baseline, report.
STEPS = ['tools/prepare_train.py', 'tools/prepare_train.py', 'tools/prepare_benchmark.py', 'deconas_plugin/train.py',
         'tools/derive.py', 'deconas_plugin/train.py', 'deconas_plugin/test.py', 'tools/inference.py',
         'deconas_plugin/train.py', 'deconas_plugin/test.py', 'tools/report.py']
SEARCH_NAME = 'search_N4_M4'  # the experiment the README's commands name
ENTRY_POINTS = ('deconas_plugin/train.py', 'deconas_plugin/test.py')  # BasicSR's: a process each


def readme_workflow():
    """The commands of README.md's workflow block: continuation lines joined, comment lines dropped."""
    with open(osp.join(ROOT, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    assert MARKER in text, f'README.md has no {MARKER} ...--> marker before its workflow block'
    block = re.search(r'```\w*\n(.*?)```', text[text.index(MARKER):], re.S).group(1)
    commands = []
    for line in block.replace('\\\n', ' ').splitlines():
        if line.strip() and not line.lstrip().startswith('#'):
            commands.append(line.strip())
    return commands


def tiny_copy(rel, dest_root, names, total_iter=2):
    """The option file ``rel`` of the project made tiny, written to the same path under ``dest_root``;
    ``names`` maps its experiment names to unique ones (read and returned)."""
    with open(osp.join(ROOT, rel)) as f:
        opt = yaml.safe_load(f)
    opt['num_gpu'] = 0
    original = opt['name']
    opt['name'] = names.setdefault(original, new_experiment_name(f'wf_{original}'[:40]))
    train = (opt.get('datasets') or {}).get('train')
    if train:
        train.update(batch_size_per_gpu=2, gt_size=32, num_worker_per_gpu=0, dataset_enlarge_ratio=1,
                     prefetch_mode=None)
    if opt.get('model_type') == 'DeCoNASSearchModel':
        total_iter = 8  # two controller phases
        opt['network_g'].update(TINY_SUPERNET)
        opt['network_c']['hidden_size'] = 16
        opt['search'].update(child_steps=4, controller_steps=3, controller_start_iter=4, reward_patches=2)
        opt['search']['reward_dataset']['gt_size'] = 32
    if 'train' in opt and train:
        opt['train'].update(total_iter=total_iter, warmup_iter=-1)
        scheduler = opt['train'].get('scheduler') or {}
        if 'milestones' in scheduler:
            scheduler['milestones'] = [1000]
        opt['val']['val_freq'] = total_iter
        opt['logger'].update(print_freq=1, save_checkpoint_freq=total_iter, use_tb_logger=False)
    datasets = list((opt.get('datasets') or {}).values()) + [(opt.get('search') or {}).get('reward_dataset') or {}]
    for dataset in datasets:  # absolute: tools/derive.py reads relative ones from the project folder
        for key in ('dataroot_gt', 'dataroot_lq', 'meta_info_file'):
            if isinstance(dataset.get(key), str):
                dataset[key] = osp.join(dest_root, dataset[key])
    path = opt.get('path') or {}
    weights = path.get('pretrain_network_g')
    if isinstance(weights, str):  # a test of a trained network: the checkpoint of its (renamed) training
        for old, new in names.items():
            weights = weights.replace(f'experiments/{old}/', f'experiments/{new}/')
        path['pretrain_network_g'] = weights
    dest = osp.join(dest_root, rel)
    os.makedirs(osp.dirname(dest), exist_ok=True)
    with open(dest, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return opt


def image_folders(embedded_data, root):
    """The placeholders' folders: DIV2K train / valid stand-ins and the four test sets (2 photos each)."""
    test = sorted(os.listdir(osp.join(embedded_data['test'], 'HR')))
    sets = osp.join(root, 'sets')
    for k, name in enumerate(('Set5', 'Set14', 'B100', 'Urban100')):
        os.makedirs(osp.join(sets, name, 'HR'))
        for file in test[2 * k % len(test):][:2]:
            os.symlink(osp.join(embedded_data['test'], 'HR', file), osp.join(sets, name, 'HR', file))
    return {'<DIV2K_train_HR>': osp.join(embedded_data['train'], 'HR'),
            '<DIV2K_valid_HR>': osp.join(embedded_data['reward'], 'HR'),
            '<folder with Set5/HR, Set14/HR, B100/HR, Urban100/HR>': sets,
            '<image or folder>': osp.join(sets, 'Set5', 'HR'),
            '<folder>': osp.join(root, 'upscaled')}


def test_readme_workflow_block_names_the_steps():
    commands = readme_workflow()
    assert [shlex.split(c)[1] for c in commands] == STEPS
    assert all(shlex.split(c)[0] == 'python' for c in commands)


def test_readme_workflow_runs_as_written(embedded_data, tmp_path):
    project = tmp_path / 'project'  # the working folder of the commands
    project.mkdir()
    os.makedirs(osp.join(ROOT, 'experiments'), exist_ok=True)
    os.symlink(osp.join(ROOT, 'experiments'), project / 'experiments')
    placeholders = image_folders(embedded_data, str(tmp_path))
    commands = readme_workflow()
    names = {SEARCH_NAME: new_experiment_name('wf_search')}
    search = names[SEARCH_NAME]
    retrain, tested = f'DeCoNASNet_x2_{search}', f'test_DeCoNASNet_x2_{search}'
    templates = ['options/train/train_DeCoNASNet_x2.yml', 'options/test/test_DeCoNASNet_x2.yml']
    option_files = sorted({w for c in commands for w in shlex.split(c, comments=True)
                           if w.startswith('options/') and w.endswith('.yml')})
    for rel in [r for r in option_files if '/train/' in r or '/search/' in r] + templates \
            + [r for r in option_files if '/test/' in r]:  # trainings first: a test names their checkpoint
        tiny_copy(rel, str(project), names)
    try:
        for command in commands:
            for placeholder, value in placeholders.items():
                command = command.replace(placeholder, shlex.quote(value))
            command = command.replace(f'experiments/{SEARCH_NAME}', f'experiments/{search}') \
                .replace(f'_{SEARCH_NAME}/', f'_{search}/')
            assert '<' not in command, f'a placeholder the test does not know: {command}'
            argv = shlex.split(command, comments=True)[1:]
            script, args = argv[0], argv[1:]
            if script == 'tools/prepare_train.py':
                args += ['--crop-size', '48', '--step', '24', '--n-thread', '1']
            elif script == 'tools/derive.py':
                args += ['--template', templates[0], '--test-template', templates[1]]
            if script in ENTRY_POINTS:
                proc = subprocess.run([sys.executable, osp.join(ROOT, script), *args], cwd=project,
                                      capture_output=True, text=True, timeout=300)
            else:
                cwd = os.getcwd()
                os.chdir(project)
                try:
                    proc = run_script(osp.join(ROOT, script), *args)
                finally:
                    os.chdir(cwd)
            assert proc.returncode == 0, f'{command}\nexit {proc.returncode}:\n{proc.stderr[-3000:]}'

        # what each step was for: the found network tested on the four sets, upscaled images, the report
        with open(osp.join(ROOT, 'experiments', search, 'derive', 'test_DeCoNASNet.yml')) as f:
            test_opt = yaml.safe_load(f)
        assert test_opt['network_g']['num_blocks'] == TINY_SUPERNET['num_blocks']
        assert test_opt['network_g']['num_feat'] == TINY_SUPERNET['num_feat']
        logs = [f for f in os.listdir(osp.join(ROOT, 'results', tested)) if f.endswith('.log')]
        with open(osp.join(ROOT, 'results', tested, logs[0])) as f:
            log = f.read()
        assert all(f'Validation {s}' in log for s in ('Set5', 'Set14', 'B100', 'Urban100')), log[-2000:]
        for file in os.listdir(placeholders['<image or folder>']):
            lr = cv2.imread(osp.join(placeholders['<image or folder>'], file), cv2.IMREAD_UNCHANGED)
            up = cv2.imread(osp.join(placeholders['<folder>'], file), cv2.IMREAD_UNCHANGED)
            assert up.shape[:2] == (2 * lr.shape[0], 2 * lr.shape[1])
        with open(project / 'results' / 'report' / 'report.md', encoding='utf-8') as f:
            report = f.read()
        assert 'CARN' in report and 'DeCoNASNet' in report
    finally:
        for name in [*names.values(), retrain, tested]:
            remove_experiment(name)
