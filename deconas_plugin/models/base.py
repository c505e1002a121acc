"""What the retrain and the search model share: the gray-image rule of the evaluation protocol,
atomic checkpoints that resume exactly, and ``train.autocast``."""
import contextlib
import os.path as osp
import random

import numpy as np
import torch
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger

from ..options import autocast_dtype
from ..utils.checkpoint import atomic_save
from ..utils.y_protocol import gray_visuals, is_single_channel


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


class DeCoNASBaseModel(SRModel):
    """SRModel whose visuals follow the gray-image rule (see ``deconas_plugin.utils.y_protocol``), with
    atomic checkpoints and optional autocast training; the base of ``DeCoNASSRModel`` and
    ``DeCoNASSearchModel`` (not registered).

    For a test/validation image whose ground-truth file has a single channel, the GT and the
    output are handed to the metrics as 1-channel tensors (the GT's own values and the luma of
    the output), so ``calculate_psnr/ssim`` with ``test_y_channel: true`` measure them on the
    image's own gray values instead of the BT.601 16..235 Y of a replicated RGB copy.
    Training is unchanged (the check only runs when visuals are requested).

    Checkpoints are written atomically (temporary file + rename) by rank 0 only; a network
    checkpoint of a DeCoNASNet also carries its genotype, and a training state carries the RNG
    states, so that a resumed run draws the same random numbers.

    ``train.autocast`` (``~``/false: fp32, the default; ``bf16``; ``fp16``, CUDA only, with a
    ``torch.amp.GradScaler`` whose state is part of the training state) runs the forward pass and
    the pixel loss of each training step under ``torch.autocast`` (``setup_autocast``, called by a
    subclass's ``init_training_settings``). Weights, gradients and the optimizer stay fp32; validation
    and test always run in fp32.
    """

    amp_dtype = None  # fp32 until setup_autocast reads train.autocast
    grad_scaler = None

    # ---------------------------------------------------------------------------------- autocast
    def setup_autocast(self):
        """Read ``train.autocast``; create the GradScaler of fp16 training."""
        self.amp_dtype = autocast_dtype((self.opt.get('train') or {}).get('autocast'), self.device.type)
        self.grad_scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        if self.amp_dtype is not None:
            get_root_logger().info(f'Training steps run under torch.autocast({self.device.type!r}, '
                                   f'{str(self.amp_dtype).replace("torch.", "")})'
                                   + (' with a GradScaler' if self.grad_scaler is not None else ''))

    def autocast(self):
        """The context of a training step's forward pass and pixel loss (a no-op in fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def backward(self, loss):
        """``loss.backward()``, scaled by the GradScaler in fp16."""
        (loss if self.grad_scaler is None else self.grad_scaler.scale(loss)).backward()

    def optimizer_step(self, optimizer):
        """``optimizer.step()``; in fp16 through the GradScaler (which skips a step with inf/NaN gradients)."""
        if self.grad_scaler is None:
            optimizer.step()
        else:
            self.grad_scaler.step(optimizer)
            self.grad_scaler.update()

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
        """What is saved with optimizers, schedulers and RNGs: the fp16 GradScaler (subclasses add theirs)."""
        return {} if self.grad_scaler is None else {'grad_scaler': self.grad_scaler.state_dict()}

    def load_extra_training_state(self, state):
        """Restore what ``extra_training_state`` saved (a state without a GradScaler leaves a fresh one)."""
        if self.grad_scaler is not None and state.get('grad_scaler'):
            self.grad_scaler.load_state_dict(state['grad_scaler'])

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
