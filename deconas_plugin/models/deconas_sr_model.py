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

from deconas_plugin.model_options import autocast_dtype, compile_settings
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

    ``train.autocast`` (``~``/false: fp32, the default; ``bf16``; ``fp16``, CUDA only, with a
    ``torch.amp.GradScaler`` whose state is part of the training state) runs the forward pass and
    the pixel loss of each training step under ``torch.autocast``. Weights, gradients and the
    optimizer stay fp32; validation and test always run in fp32.

    Every CUDA speed path is opt-in (the default is plain eager PyTorch until a GPU run of
    ``tools/gpu_evidence.py --stage speed`` shows one faster and as correct): ``train.compile: true``
    (``compile_settings``) runs the training step's forward and backward through ``torch.compile``,
    falling back to eager steps if that fails; ``train.cuda_graph: true`` replays the whole step as one
    CUDA graph instead (``setup_cuda_graph``); ``optim_g: {type: Adam, fused: true}`` is torch's fused
    Adam (BasicSR passes the option file's arguments to the optimizer).
    """

    def init_training_settings(self):
        super().init_training_settings()
        self.setup_autocast()
        self.setup_compile()
        self.setup_cuda_graph()

    # ----------------------------------------------------------------------------------- compile
    def setup_compile(self):
        """``train.compile``: run the training step's forward (and its backward) through ``torch.compile``.

        The compiled module is only the training step's callable (``self.train_forward``): ``net_g``
        stays the plain network, so checkpoints, EMA, validation (whole images of any size) and exact
        resume are untouched. If compiling fails (no compiler, an unsupported backend, a graph torch
        cannot trace), the failure is logged once and training goes on eagerly from the same step.
        """
        train = self.opt.get('train') or {}
        self.compile_args = compile_settings(train.get('compile'), self.device.type)
        self.train_forward = None  # None: the eager net_g (never truth-test a compiled module: it has __len__)
        self.compile_checked = False
        if self.compile_args is None:
            return
        try:
            self.train_forward = torch.compile(self.net_g, **self.compile_args)
        except Exception as e:  # noqa: BLE001  (an unknown backend or mode: report and train eagerly)
            self.compile_failed(e)
            return
        get_root_logger().info(f'Training steps run through torch.compile({self.compile_args})')

    def compile_failed(self, error: Exception):
        get_root_logger().warning(f'train.compile: torch.compile failed ({type(error).__name__}: '
                                  f'{str(error).strip().splitlines()[0][:300] if str(error).strip() else ""}); '
                                  'training continues eagerly')
        self.train_forward, self.compile_args = None, None

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
        if getattr(self, 'graph_wanted', False):
            return self._graph_optimize_parameters(current_iter)
        compiled = getattr(self, 'train_forward', None) is not None
        if getattr(self, 'amp_dtype', None) is None and not compiled:  # eager fp32: BasicSR's own step
            return super().optimize_parameters(current_iter)
        if compiled and not self.compile_checked:  # the first compiled step compiles: fall back if it fails
            try:
                self._optimize_parameters(current_iter, self.train_forward)
            except Exception as e:  # noqa: BLE001
                self.compile_failed(e)
                return self.optimize_parameters(current_iter)
            self.compile_checked = True
            return
        self._optimize_parameters(current_iter, self.train_forward if compiled else self.net_g)

    def _losses(self, output, gt):
        """(total loss, loss dict) of SRModel: the pixel loss, and the perceptual loss (a VGG, fp32 on the
        fp32 output, outside autocast)."""
        l_total = 0
        loss_dict = OrderedDict()
        if self.cri_pix:
            with self.autocast():
                l_pix = self.cri_pix(output, gt)
            l_total += l_pix
            loss_dict['l_pix'] = l_pix
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(output, gt)
            if l_percep is not None:
                l_total += l_percep
                loss_dict['l_percep'] = l_percep
            if l_style is not None:
                l_total += l_style
                loss_dict['l_style'] = l_style
        return l_total, loss_dict

    def _optimize_parameters(self, current_iter, net):
        # SRModel.optimize_parameters with ``net`` (net_g or its compiled callable) as the forward pass, which
        # runs with the pixel loss under ``self.autocast()``.
        self.optimizer_g.zero_grad()
        if (getattr(self, 'compile_args', None) or {}).get('mode') == 'reduce-overhead' and net is not self.net_g:
            torch.compiler.cudagraph_mark_step_begin()  # a new iteration: earlier CUDA-graph outputs may be reused
        with self.autocast():
            self.output = net(self.lq).float()
        l_total, loss_dict = self._losses(self.output, self.gt)
        self.backward(l_total)
        self.optimizer_step(self.optimizer_g)
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    # ------------------------------------------------------------------------- whole-step CUDA graph
    GRAPH_WARMUP_STEPS = 3

    def setup_cuda_graph(self):
        """``train.cuda_graph: true``: capture the whole training step (forward, loss, backward, Adam step) as
        one CUDA graph and replay it every iteration (no Python, no kernel launches from the CPU).

        The first ``GRAPH_WARMUP_STEPS`` iterations of a process are eager steps on a side stream (they
        create Adam's state and cuDNN's plans); the next one is captured, then replayed. Adam runs with
        ``capturable=True`` and a tensor learning rate (the scheduler's value is copied into it before each
        replay). Where it cannot work (no CUDA, distributed training, fp16 with its GradScaler, a
        learning-rate warm-up, an optimizer other than Adam) or capturing fails, a warning says so and
        the steps run eagerly (``train.compile`` applies). It replaces ``train.compile`` when on.
        """
        train = self.opt.get('train') or {}
        value = train.get('cuda_graph', False)
        if not isinstance(value, bool):
            raise ValueError(f'train.cuda_graph must be true or false, got {value!r}')
        self.graph_wanted, self.graph, self.graph_steps = False, None, 0
        if not value:
            return
        why = ('it needs CUDA' if self.device.type != 'cuda' else
               'not with distributed training' if self.opt.get('dist') else
               'not with fp16 autocast (its GradScaler)' if getattr(self, 'grad_scaler', None) is not None else
               'not with a learning-rate warm-up (train.warmup_iter)' if (train.get('warmup_iter') or -1) > 0 else
               'only with Adam' if type(self.optimizer_g) is not torch.optim.Adam else None)
        if why:
            get_root_logger().warning(f'train.cuda_graph: {why}; training steps run eagerly')
            return
        self.graph_wanted = True
        self.train_forward = None  # the graph replaces train.compile
        get_root_logger().info('Training steps are captured as one CUDA graph after '
                               f'{self.GRAPH_WARMUP_STEPS} eager steps and replayed')

    def _graph_failed(self, error: Exception):
        get_root_logger().warning(f'train.cuda_graph: capturing the step failed ({type(error).__name__}: '
                                  f'{str(error).strip().splitlines()[0][:300] if str(error).strip() else ""}); '
                                  'training continues eagerly')
        self.graph_wanted, self.graph = False, None
        torch.cuda.synchronize(self.device)

    def _prepare_graph_optimizer(self):
        """Adam made capturable, each group's lr a device tensor of the current value (also after a resume
        loaded plain floats and CPU step counters)."""
        opt = self.optimizer_g
        if not hasattr(self, 'graph_lrs'):  # once per process, after a resume has loaded its state
            self.graph_lrs = [torch.zeros((), device=self.device) for _ in opt.param_groups]
            for group in opt.param_groups:
                group['lr'] = float(group['lr'])
                group['capturable'] = True
            for state in opt.state.values():
                if 'step' in state and state['step'].device != self.device:
                    state['step'] = state['step'].to(self.device, torch.float32)
        for group, lr in zip(opt.param_groups, self.graph_lrs):
            if group['lr'] is not lr:  # the scheduler set a new value: into the tensor the graph reads
                lr.fill_(float(group['lr']))
                group['lr'] = lr

    def _graph_optimize_parameters(self, current_iter):
        self._prepare_graph_optimizer()
        if self.graph is not None and self.lq.shape == self.graph_lq.shape and self.gt.shape == self.graph_gt.shape:
            self.graph_lq.copy_(self.lq)
            self.graph_gt.copy_(self.gt)
            self.graph.replay()
            self.output = self.graph_output
            self.log_dict = self.reduce_loss_dict(self.graph_losses)
            if self.ema_decay > 0:
                self.model_ema(decay=self.ema_decay)
            return
        if self.graph is not None:  # another batch shape (a smaller last batch): this step eagerly
            return self._optimize_parameters(current_iter, self.net_g)
        try:
            if self.graph_steps < self.GRAPH_WARMUP_STEPS:
                side = torch.cuda.Stream(self.device)
                side.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(side):
                    self._optimize_parameters(current_iter, self.net_g)
                torch.cuda.current_stream(self.device).wait_stream(side)
                self.graph_steps += 1
                return
            self._capture_step()
        except Exception as e:  # noqa: BLE001
            self._graph_failed(e)
            return self.optimize_parameters(current_iter)
        self._graph_optimize_parameters(current_iter)  # replay it for this iteration

    def _capture_step(self):
        self.graph_lq, self.graph_gt = self.lq.clone(), self.gt.clone()
        self.optimizer_g.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        dtype = getattr(self, 'amp_dtype', None)
        amp = (torch.autocast('cuda', dtype=dtype, cache_enabled=False) if dtype is not None
               else contextlib.nullcontext())
        with torch.cuda.graph(graph):
            with amp:
                output = self.net_g(self.graph_lq).float()
            l_total, loss_dict = self._losses(output, self.graph_gt)
            l_total.backward()
            self.optimizer_g.step()
        self.graph, self.graph_output, self.graph_losses = graph, output, loss_dict

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
