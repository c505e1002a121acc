"""Tiny valid option files for the tests that run the entry points on the CPU.

They read the embedded scikit-image photos at x2 (the ``embedded_data`` fixture of conftest.py,
96-px crops); each test changes only what it is about.
"""
import copy
import os
import os.path as osp

import yaml

from shared_data import ROOT

TINY_NET = {'type': 'DeCoNASNet', 'genotype': '7 5 3', 'num_blocks': 2, 'num_nodes': 2, 'num_feat': 8, 'upscale': 2}
TINY_SUPERNET = {'num_feat': 4, 'num_blocks': 2, 'num_nodes': 2}


def paired(folder, **extra):
    """A disk PairedImageDataset of a folder made by prepare_embedded (GTmod2 / LRbicx2)."""
    return dict(type='PairedImageDataset', dataroot_gt=osp.join(folder, 'GTmod2'),
                dataroot_lq=osp.join(folder, 'LRbicx2'), io_backend={'type': 'disk'}, **extra)


def train_options(data, name='tiny_train', total_iter=2):
    """A DeCoNASNet retrain (``DeCoNASSRModel``) of ``TINY_NET``: batch 2 of LR 16x16 patches."""
    return {
        'name': name, 'model_type': 'DeCoNASSRModel', 'scale': 2, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {
            'train': paired(data['train'], name='embedded_train', gt_size=32, use_hflip=True, use_rot=True,
                            num_worker_per_gpu=0, batch_size_per_gpu=2, dataset_enlarge_ratio=1,
                            prefetch_mode=None),
            'val': paired(data['test'], name='embedded_test'),
        },
        'network_g': dict(TINY_NET),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'ema_decay': 0, 'optim_g': {'type': 'Adam', 'lr': 1e-3, 'betas': [0.9, 0.999]},
                  'total_iter': total_iter, 'warmup_iter': -1,
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [1000], 'gamma': 0.5},
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'}},
        'val': {'val_freq': 1000, 'save_img': False,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 2, 'test_y_channel': True}}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 1000, 'use_tb_logger': False,
                   'wandb': {'project': None, 'resume_id': None}},
        'dist_params': {'backend': 'gloo', 'port': 29500},
    }


def search_options(data, name='tiny_search', total_iter=8):
    """``options/search/search_tiny_cpu.yml`` with ``TINY_SUPERNET``, batch 2 of LR 16x16 patches,
    a controller phase of 3 REINFORCE steps every 4 child steps from step 4 on, checkpoints and
    validation at ``total_iter``."""
    with open(osp.join(ROOT, 'options', 'search', 'search_tiny_cpu.yml')) as f:
        opt = yaml.safe_load(f)
    opt.update(name=name, num_gpu=0)
    opt['datasets']['train'].update(paired(data['train']), gt_size=32, batch_size_per_gpu=2, dataset_enlarge_ratio=2)
    opt['datasets']['val'].update(paired(data['test']))
    opt['network_g'].update(TINY_SUPERNET)
    opt['search'].update(child_steps=4, controller_steps=3, controller_start_iter=4, reward_patches=2)
    opt['search']['reward_dataset'].update(paired(data['reward']), gt_size=32)
    opt['train']['total_iter'] = total_iter
    opt['val']['val_freq'] = total_iter
    opt['logger'].update(print_freq=4, save_checkpoint_freq=total_iter, use_tb_logger=False)
    return opt


def parsed_options(opt, root):
    """``opt`` as BasicSR's parse_options hands it to ``build_model`` (training, CPU, one process),
    with the experiment folders under ``root``."""
    opt.update(is_train=True, dist=False, rank=0, world_size=1, num_gpu=0, auto_resume=False, root_path=ROOT)
    for phase, dataset in opt['datasets'].items():
        dataset.update(phase=phase, scale=opt['scale'])
    opt['path'].update(experiments_root=root, models=osp.join(root, 'models'),
                       training_states=osp.join(root, 'training_states'), log=root,
                       visualization=osp.join(root, 'visualization'))
    os.makedirs(root, exist_ok=True)
    return opt


def write_options(path, opt) -> str:
    """Write ``opt`` as YAML to ``path``; returns the path as a string."""
    with open(path, 'w') as f:
        yaml.safe_dump(copy.deepcopy(opt), f, sort_keys=False)
    return str(path)
