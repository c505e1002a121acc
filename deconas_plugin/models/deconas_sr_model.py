"""BasicSR's SRModel plus the gray-image rule of the evaluation protocol."""
import os.path as osp
import random

import numpy as np
import torch
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import MODEL_REGISTRY

from deconas_plugin.utils.checkpoint import atomic_save
from deconas_plugin.utils.y_protocol import gray_visuals, is_single_channel


def rng_state():
    """Every RNG a training step draws from (Python, NumPy, torch CPU and CUDA)."""
    state = {'python': random.getstate(), 'numpy': np.random.get_state(), 'torch': torch.get_rng_state()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


@MODEL_REGISTRY.register()
class DeCoNASSRModel(SRModel):
    """SRModel whose visuals follow the gray-image rule (see ``deconas_plugin.utils.y_protocol``).

    For a test/validation image whose ground-truth file has a single channel, the GT and the
    output are handed to the metrics as 1-channel tensors (the GT's own values and the luma of
    the output), so ``calculate_psnr/ssim`` with ``test_y_channel: true`` measure them on the
    image's own gray values instead of the BT.601 16..235 Y of a replicated RGB copy.
    Training is unchanged (the check only runs when visuals are requested).

    Checkpoints are written atomically (temporary file + rename) by rank 0 only; a network
    checkpoint of a DeCoNASNet also carries its genotype, and a training state carries the RNG
    states, so that a resumed run draws the same random numbers.
    """

    def model_to_device(self, net):
        # BasicSR passes device_ids=[cuda device] to DistributedDataParallel, which fails on CPU.
        if not self.opt['dist'] or torch.cuda.is_available():
            return super().model_to_device(net)
        return torch.nn.parallel.DistributedDataParallel(
            net.to(self.device), find_unused_parameters=self.opt.get('find_unused_parameters', False))

    def test(self):
        # The bare network, not the DDP wrapper: validation runs on rank 0 only, and a DDP forward
        # would wait for the other ranks to synchronise buffers (the mean of DeCoNASNet/CARN/RDN).
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.get_bare_model(self.net_g)
        net.eval()
        with torch.no_grad():
            self.output = net(self.lq)
        self.net_g.train()

    def save_network(self, net, net_label, current_iter, param_key='params'):
        if self.opt.get('rank', 0) != 0:
            return
        nets = net if isinstance(net, list) else [net]
        keys = param_key if isinstance(param_key, list) else [param_key]
        save_dict = {}
        for net_, key in zip(nets, keys):
            state = self.get_bare_model(net_).state_dict()
            save_dict[key] = {(k[7:] if k.startswith('module.') else k): v.cpu() for k, v in state.items()}
        genotype = getattr(self.get_bare_model(nets[0]), 'genotype', None)
        if genotype is not None:
            save_dict['genotype'] = genotype.to_string()
        label = 'latest' if current_iter == -1 else current_iter
        atomic_save(save_dict, osp.join(self.opt['path']['models'], f'{net_label}_{label}.pth'))

    def extra_training_state(self):
        """What a subclass adds to a training state (saved with optimizers, schedulers and RNGs)."""
        return {}

    def load_extra_training_state(self, state):
        """Restore what ``extra_training_state`` saved."""

    def save_training_state(self, epoch, current_iter):
        if current_iter == -1 or self.opt.get('rank', 0) != 0:
            return
        state = {
            'epoch': epoch, 'iter': current_iter,
            'optimizers': [o.state_dict() for o in self.optimizers],
            'schedulers': [s.state_dict() for s in self.schedulers],
            'rng': rng_state(), **self.extra_training_state()}
        atomic_save(state, osp.join(self.opt['path']['training_states'], f'{current_iter}.state'))

    def resume_training(self, resume_state):
        super().resume_training(resume_state)
        if 'rng' in resume_state:
            set_rng_state(resume_state['rng'])
        self.load_extra_training_state(resume_state)

    def feed_data(self, data):
        super().feed_data(data)
        paths = data.get('gt_path')
        if isinstance(paths, str):
            paths = [paths]
        self._gt_paths = list(paths) if paths is not None else []

    def _gt_is_single_channel(self):
        flags = [is_single_channel(p) for p in getattr(self, '_gt_paths', [])]
        if not flags or not any(flags):
            return False
        if not all(flags):
            raise ValueError('A batch mixes single-channel and colour ground-truth images; '
                             'validate with batch size 1 (BasicSR does).')
        return True

    def get_current_visuals(self):
        visuals = super().get_current_visuals()
        if self._gt_is_single_channel():
            visuals = gray_visuals(visuals)
        return visuals
