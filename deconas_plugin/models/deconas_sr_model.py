"""The retrain model: BasicSR's SRModel on ``DeCoNASBaseModel``, with an optional compiled training step."""
from collections import OrderedDict

import torch
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY

from ..options import compile_settings
from .base import DeCoNASBaseModel


@MODEL_REGISTRY.register()
class DeCoNASSRModel(DeCoNASBaseModel):
    """SRModel with the gray-image rule, atomic checkpoints, exact resume and ``train.autocast`` of
    ``DeCoNASBaseModel``.

    Every CUDA speed path is opt-in (the default is plain eager PyTorch until a GPU run of
    ``tools/gpu_evidence.py --stage speed`` shows one faster and as correct): ``train.compile: true``
    (``compile_settings``) runs the training step's forward and backward through ``torch.compile``,
    falling back to eager steps if that fails; ``optim_g: {type: Adam, fused: true}`` is torch's fused
    Adam (BasicSR passes the option file's arguments to the optimizer).
    """

    def init_training_settings(self):
        super().init_training_settings()
        self.setup_autocast()
        self.setup_compile()

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

    def optimize_parameters(self, current_iter):
        compiled = self.train_forward is not None
        if self.amp_dtype is None and not compiled:  # eager fp32: BasicSR's own step
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

    def _optimize_parameters(self, current_iter, net):
        # SRModel.optimize_parameters with ``net`` (net_g or its compiled callable) as the forward pass, which
        # runs with the pixel loss under ``self.autocast()``; the perceptual loss (a VGG) runs in fp32 on the
        # fp32 output, outside autocast.
        self.optimizer_g.zero_grad()
        if (self.compile_args or {}).get('mode') == 'reduce-overhead' and net is not self.net_g:
            torch.compiler.cudagraph_mark_step_begin()  # a new iteration: earlier CUDA-graph outputs may be reused
        with self.autocast():
            self.output = net(self.lq).float()
        l_total = 0
        loss_dict = OrderedDict()
        if self.cri_pix:
            with self.autocast():
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
