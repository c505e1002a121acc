"""BasicSR's SRModel plus the gray-image rule of the evaluation protocol, and optional autocast training."""
import contextlib
import os.path as osp
import random
from collections import OrderedDict

import numpy as np
import torch
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY

from deconas_plugin.utils.checkpoint import atomic_save
from deconas_plugin.utils.y_protocol import gray_visuals, is_single_channel


def rng_state():
    """Every RNG a training step draws from (Python, NumPy, torch CPU and CUDA)."""
    state = {'python': random.getstate(), 'numpy': np.random.get_state(), 'torch': torch.get_rng_state()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


AUTOCAST_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
AUTOCAST_VALUES = '~ (or false: fp32, the default), bf16 or fp16'


def autocast_dtype(value):
    """The dtype of ``train.autocast``: None for ``~``/false (fp32), bfloat16 for bf16, float16 for fp16."""
    if value is None or value is False:
        return None
    if isinstance(value, str) and value in AUTOCAST_DTYPES:
        return AUTOCAST_DTYPES[value]
    raise ValueError(f'train.autocast must be {AUTOCAST_VALUES}, got {value!r}')


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

    ``train.autocast`` (``~``/false: fp32, the default; ``bf16``; ``fp16``, CUDA only, with a
    ``torch.amp.GradScaler`` whose state is part of the training state) runs the forward pass and
    the pixel loss of each training step under ``torch.autocast``. Weights, gradients and the
    optimizer stay fp32; validation and test always run in fp32.
    """

    def init_training_settings(self):
        super().init_training_settings()
        self.setup_autocast()

    # ---------------------------------------------------------------------------------- autocast
    def setup_autocast(self):
        """Read ``train.autocast``; create the GradScaler of fp16 training."""
        self.amp_dtype = autocast_dtype((self.opt.get('train') or {}).get('autocast'))
        self.grad_scaler = None
        if self.amp_dtype == torch.float16:
            if self.device.type != 'cuda':
                raise ValueError(f'train.autocast: fp16 needs CUDA, but this run is on {self.device}; '
                                 'use autocast: bf16 on a CPU')
            self.grad_scaler = torch.amp.GradScaler(self.device.type)
        if self.amp_dtype is not None:
            get_root_logger().info(f'Training steps run under torch.autocast({self.device.type!r}, '
                                   f'{str(self.amp_dtype).replace("torch.", "")})'
                                   + (' with a GradScaler' if self.grad_scaler is not None else ''))

    def autocast(self):
        """The context of a training step's forward pass and pixel loss (a no-op in fp32)."""
        dtype = getattr(self, 'amp_dtype', None)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def backward(self, loss):
        """``loss.backward()``, scaled by the GradScaler in fp16."""
        scaler = getattr(self, 'grad_scaler', None)
        (loss if scaler is None else scaler.scale(loss)).backward()

    def optimizer_step(self, optimizer):
        """``optimizer.step()``; in fp16 through the GradScaler (which skips a step with inf/NaN gradients)."""
        scaler = getattr(self, 'grad_scaler', None)
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()

    def optimize_parameters(self, current_iter):
        if getattr(self, 'amp_dtype', None) is None:  # fp32: BasicSR's own step
            return super().optimize_parameters(current_iter)
        # SRModel.optimize_parameters, with the forward pass and the pixel loss under ``self.autocast()``.
        # The perceptual loss (a VGG) runs in fp32 on the fp32 output.
        self.optimizer_g.zero_grad()
        l_total = 0
        loss_dict = OrderedDict()
        with self.autocast():
            self.output = self.net_g(self.lq).float()
            if self.cri_pix:
                l_pix = self.cri_pix(self.output, self.gt)
                l_total += l_pix
                loss_dict['l_pix'] = l_pix
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(self.output, self.gt)
            if l_percep is not None:
                l_total += l_percep
                loss_dict['l_percep'] = l_percep
            if l_style is not None:
                l_total += l_style
                loss_dict['l_style'] = l_style

        self.backward(l_total)
        self.optimizer_step(self.optimizer_g)

        self.log_dict = self.reduce_loss_dict(loss_dict)

        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

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
        """What is saved with optimizers, schedulers and RNGs: the fp16 GradScaler (subclasses add theirs)."""
        scaler = getattr(self, 'grad_scaler', None)
        return {} if scaler is None else {'grad_scaler': scaler.state_dict()}

    def load_extra_training_state(self, state):
        """Restore what ``extra_training_state`` saved (a state without a GradScaler leaves a fresh one)."""
        scaler = getattr(self, 'grad_scaler', None)
        if scaler is not None and state.get('grad_scaler'):
            scaler.load_state_dict(state['grad_scaler'])

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
