"""The DeCoNAS search as a BasicSR model: ENAS-style alternation of child and controller steps."""
import hashlib
import json
import math
import os
import os.path as osp
from collections import OrderedDict

import torch
from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY

from ..complexity import count_params
from ..options import controller_options, search_options
from ..reward import draw_patches, patch_seed, penalized_reward, psnr_y, rank_share, reward_dataset
from ..search_cost import search_cost
from ..search_signal import probe_genotypes, score_table, summarize
from ..utils import dist as dist_util
from ..utils.checkpoint import atomic_write_text
from .base import DeCoNASBaseModel

CHILD_DRAWS_MAX = 1000  # child genotypes drawn in one batched controller unroll


def _iteration(row: str) -> float:
    """The ``iter`` of a JSON row; infinite for a row cut off by a kill."""
    try:
        return json.loads(row)['iter']
    except json.JSONDecodeError:
        return math.inf


def _digest(net) -> str:
    """A hash of a network's weights (to compare ranks bit for bit)."""
    h = hashlib.sha256()
    for t in net.state_dict().values():
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@MODEL_REGISTRY.register()
class DeCoNASSearchModel(DeCoNASBaseModel):
    """Search with a weight-sharing supernet (``network_g``) and an LSTM controller (``network_c``).

    Every training iteration is one child step: the controller samples a genotype, the supernet
    takes one optimizer step on the pixel loss of that sub-network. After every ``child_steps``
    iterations (from ``controller_start_iter`` on) the controller takes ``controller_steps``
    REINFORCE steps, each rewarded with the PSNR-Y of a fresh sample on ``reward_patches``
    validation patches minus the complexity penalty. BasicSR's validation hook evaluates the
    controller's greedy genotype. Options: the ``search`` section (see ``options.SEARCH_DEFAULTS``),
    ``network_c`` (its M, N and fusion flag default to those of ``network_g``), ``train.optim_c``
    and ``train.reinforce_opt``. ``train.autocast`` (see ``DeCoNASBaseModel``) applies to the child
    step only: rewards, validation and derivation are computed in fp32.
    """

    def __init__(self, opt):
        self.search_opt = search_options(opt)
        opt['network_c'] = controller_options(opt)
        super().__init__(opt)

    # ------------------------------------------------------------------------------------- setup
    def model_to_device(self, net):
        # No DistributedDataParallel: gradients are averaged by hand (see ``utils.dist``), and
        # rank 0's initial weights are broadcast (BasicSR seeds each rank differently).
        net = net.to(self.device)
        dist_util.broadcast_module_(net)
        return net

    def init_training_settings(self):
        train_opt = self.opt['train']
        self.net_g.train()
        self.net_c = self.model_to_device(build_network(self.opt['network_c']))
        load_path = self.opt['path'].get('pretrain_network_c')
        if load_path is not None:
            self.load_network(self.net_c, load_path, self.opt['path'].get('strict_load_c', True), 'params')
        self.net_c.train()
        self.cri_pix = build_loss(train_opt.get('pixel_opt', {'type': 'L1Loss'})).to(self.device)
        self.cri_reinforce = build_loss(train_opt.get('reinforce_opt', {'type': 'REINFORCELoss'})).to(self.device)
        supernet = self.get_bare_model(self.net_g)
        self.arch_size = supernet.size()
        self.cost_fn = search_cost(self.search_opt, supernet)  # search.penalty: params, MACs or latency
        self.cost_max = self.cost_fn.cost_max
        crop = self.search_opt['reward_crop_border']
        self.reward_crop_border = supernet.upscale if crop is None else crop
        self.reward_dataset = reward_dataset(self.opt)
        self.setup_optimizers()
        self.setup_schedulers()
        self.setup_autocast()  # train.autocast: the child step's forward pass and loss (rewards stay fp32)
        self.controller_step = 0  # REINFORCE steps taken so far (history rows carry it)
        self.skipped = {'child_nonfinite': 0, 'reward_nonfinite': 0}
        self.pending_child_bits = torch.zeros(0, self.net_c.num_decisions, device=self.device)
        self.history_path = osp.join(self.opt['path']['experiments_root'], self.search_opt['history_file'])
        self.signal_path = osp.join(self.opt['path']['experiments_root'], self.search_opt['signal_file'])
        self.phase_batch = None  # reward_mode common: the patches every controller step of the phase scores
        self.probe = None  # signal_probe: (genotypes, batches), made at the first phase
        self.log_dict = OrderedDict()

    def draw_reward_patches(self, *keys):
        """This rank's share of ``reward_patches`` reward patches, fixed by the option file's seed and ``keys``.

        Images and crops are drawn without touching the global random state, so a resumed search
        scores the same patches and draws the same child batches. The PSNR is averaged over ranks.
        """
        share = rank_share(self.search_opt['reward_patches'], self.opt.get('world_size', 1))
        seed = patch_seed(self.opt.get('manual_seed'), self.opt.get('rank', 0), *keys)
        return draw_patches(self.reward_dataset, share, seed, self.device)

    def setup_optimizers(self):
        train_opt = self.opt['train']
        optim = dict(train_opt['optim_g'])
        self.optimizer_g = self.get_optimizer(optim.pop('type'), self.net_g.parameters(), **optim)
        optim = dict(train_opt.get('optim_c', {'type': 'Adam', 'lr': 3e-4}))
        self.optimizer_c = self.get_optimizer(optim.pop('type'), self.net_c.parameters(), **optim)
        self.optimizers = [self.optimizer_g, self.optimizer_c]

    def setup_schedulers(self):
        # The schedule (child Adam halved every 50 epochs in the paper) applies to the shared weights
        # only; the controller keeps a constant learning rate (ENAS).
        optimizers = self.optimizers
        self.optimizers = [self.optimizer_g]
        try:
            super().setup_schedulers()
        finally:
            self.optimizers = optimizers

    # ---------------------------------------------------------------------------------- training
    def _sample(self):
        """(genotype, log_prob, entropy, probabilities) of one controller step, the same on every rank;
        probabilities: of a 1 at each decision, given the decisions before it (the policy that drew it).

        Rank 0's decisions are broadcast (a no-op in one process); every rank scores them with the
        same controller weights, so every rank also computes the same log-probability and gradient.
        """
        bits = dist_util.broadcast_(self.net_c.decide(1, 'sample').contiguous())
        logits = self.net_c.logits(bits)
        log_prob, entropy = (v[0] for v in self.net_c.score_logits(logits, bits))
        return self.net_c.bits_to_genotype(bits[0]), log_prob, entropy, torch.sigmoid(logits.detach()[0])

    def _next_phase_iter(self, current_iter: int) -> int:
        """The first iteration >= ``current_iter`` that ends with a controller phase."""
        opt = self.search_opt
        first = max(current_iter, opt['controller_start_iter'])
        return -(-first // opt['child_steps']) * opt['child_steps']

    def _child_genotype(self, current_iter: int):
        """The genotype of this iteration's child step.

        The policy only changes in controller phases, so the genotypes of every child step up to
        the next phase (at most ``CHILD_DRAWS_MAX``) are drawn in one batched unroll and broadcast
        once, instead of one sequential unroll per step (benchmark section 3: "child draws").
        The draws not used yet are part of the training state, so a resume uses the same ones.
        """
        if len(self.pending_child_bits) == 0:
            count = min(CHILD_DRAWS_MAX, self._next_phase_iter(current_iter) - current_iter + 1,
                        max(1, self.opt['train'].get('total_iter', current_iter) - current_iter + 1))
            self.pending_child_bits = dist_util.broadcast_(self.net_c.decide(count, 'sample').contiguous())
        bits, self.pending_child_bits = self.pending_child_bits[0], self.pending_child_bits[1:]
        return self.net_c.bits_to_genotype(bits)

    def optimize_parameters(self, current_iter):
        genotype = self._child_genotype(current_iter)
        self.optimizer_g.zero_grad(set_to_none=True)
        with self.autocast():  # train.autocast (a no-op in fp32); weights and gradients stay fp32
            self.output = self.net_g(self.lq, genotype)
            if self.amp_dtype is not None:
                self.output = self.output.float()
            l_pix = self.cri_pix(self.output, self.gt)
        # Decide on every rank together, so that no rank waits in an all-reduce the others skip.
        if dist_util.mean_over_ranks(torch.isfinite(l_pix).item(), self.device) == 1:
            self.backward(l_pix)  # scaled by the GradScaler in fp16
            dist_util.average_gradients_(self.net_g)  # (scaled) gradients, identical on every rank
            self.optimizer_step(self.optimizer_g)  # fp16: unscales, skips a step with inf gradients
        else:  # never let a NaN/inf reach the shared weights
            self.skipped['child_nonfinite'] += 1
            get_root_logger().warning(f'iter {current_iter}: non-finite child loss for {genotype}; step skipped '
                                      f"({self.skipped['child_nonfinite']} so far)")
        self.log_dict['l_pix'] = float(l_pix.detach())
        self.log_dict['child_params_M'] = count_params(genotype, **self.arch_size) / 1e6
        self._trace({'iter': current_iter, 'child': genotype.to_string()})
        opt = self.search_opt
        if current_iter >= opt['controller_start_iter'] and current_iter % opt['child_steps'] == 0:
            self.train_controller(current_iter)

    def train_controller(self, current_iter):
        """``controller_steps`` REINFORCE steps; each appends one row to the search history.

        With ``reward_mode: fresh`` every step scores its genotype on its own reward patches (the
        paper's way); with ``common`` every step of the phase scores on the same patches, so the
        difficulty of a draw cancels out between the genotypes the controller compares, and
        ``baseline_samples`` restarts the baseline on those patches so that a new draw (and the
        supernet's progress since the last phase) does not read as a reward jump. Each rank scores
        its own share of the patches; the PSNR is averaged over ranks, so every rank takes the
        same controller step.
        """
        self.net_g.eval()
        self.pending_child_bits = self.pending_child_bits[:0]  # drawn from the policy before this phase
        opt = self.search_opt
        if opt['signal_probe']:
            self.probe_signal(current_iter)
        common = opt['reward_mode'] == 'common'
        self.phase_batch = self.draw_reward_patches(1, current_iter) if common else None
        if opt['baseline_samples']:
            self.reset_baseline(opt['baseline_samples'])
        rows = []
        for _ in range(opt['controller_steps']):
            lq, gt = self.phase_batch if common else self.draw_reward_patches(self.controller_step)
            genotype, log_prob, entropy, probs = self._sample()
            psnr = dist_util.mean_over_ranks(psnr_y(self.net_g, genotype, lq, gt, self.reward_crop_border),
                                             self.device)
            params, cost = count_params(genotype, **self.arch_size), self.cost_fn(genotype)
            reward = penalized_reward(psnr, cost, opt['alpha'], self.cost_max)
            self.controller_step += 1
            try:
                loss, advantage = self.cri_reinforce(log_prob, entropy, reward)
            except FloatingPointError:
                self.skipped['reward_nonfinite'] += 1
                get_root_logger().warning(f'non-finite reward for {genotype} (psnr {psnr}); controller step skipped')
                continue
            self.optimizer_c.zero_grad(set_to_none=True)
            loss.backward()
            dist_util.average_gradients_(self.net_c)  # identical already; keeps the ranks bit-exact
            self.optimizer_c.step()
            rows.append({
                'iter': current_iter, 'controller_step': self.controller_step, 'genotype': genotype.to_string(),
                'bits': genotype.to_string('bits'), 'psnr': psnr, 'params': params, 'cost': cost,
                'cost_unit': self.cost_fn.unit,
                'reward': self.cri_reinforce.last_reward, 'baseline': float(self.cri_reinforce.baseline),
                'advantage': advantage, 'entropy': float(entropy.detach()), 'log_prob': float(log_prob.detach()),
                'p': [round(float(v), 4) for v in probs]})
            self._trace({'iter': current_iter, 'controller': genotype.to_string(), 'psnr': psnr})
        self.net_g.train()
        self._append_rows(self.history_path, rows)
        if rows:
            for key in ('reward', 'baseline', 'entropy', 'psnr'):
                self.log_dict[key] = sum(r[key] for r in rows) / len(rows)
            self.log_dict['params_M'] = sum(r['params'] for r in rows) / len(rows) / 1e6

    def reset_baseline(self, samples: int):
        """Restart the baseline at the mean reward of ``samples`` policy samples on the phase's patches."""
        bits = dist_util.broadcast_(self.net_c.decide(samples, 'sample').contiguous())
        with torch.no_grad():
            _, entropy = self.net_c.score(bits)
        lq, gt = self.phase_batch
        rewards = []
        for b, h in zip(bits, entropy):
            genotype = self.net_c.bits_to_genotype(b)
            psnr = dist_util.mean_over_ranks(psnr_y(self.net_g, genotype, lq, gt, self.reward_crop_border),
                                             self.device)
            reward = penalized_reward(psnr, self.cost_fn(genotype), self.search_opt['alpha'], self.cost_max)
            rewards.append(self.cri_reinforce.shaped_reward(reward, h))
        rewards = [r for r in rewards if math.isfinite(r)]  # a non-finite reward never reaches the baseline
        if rewards:
            self.cri_reinforce.reset_baseline(sum(rewards) / len(rewards))

    def probe_signal(self, current_iter: int):
        """The architecture signal on the current shared weights (``search.signal_probe``).

        The same ``signal_probe`` uniform random genotypes, plus the empty and the full one, on the
        same 2 batches at every phase, so the rows of ``signal_file`` form a curve over the search:
        genotype / batch / interaction std and the SNR of the search's reward mode (see
        ``deconas_plugin.search_signal``). Logged to tensorboard as ``signal_*``.
        """
        if self.probe is None:  # fixed for the whole search: drawn (and read from disk) once
            sup = self.get_bare_model(self.net_g)
            seed = patch_seed(self.opt.get('manual_seed'), 0, 2)  # the same genotypes on every rank
            genotypes = probe_genotypes(sup.num_nodes, sup.num_blocks, sup.feature_fusion_search,
                                        self.search_opt['signal_probe'], seed)
            batches = [self.draw_reward_patches(3, b) for b in range(2)]  # this rank's share of 2 fixed batches
            self.probe = genotypes, batches
        genotypes, batches = self.probe
        table = torch.from_numpy(score_table(self.net_g, genotypes, batches, self.reward_crop_border))
        table = table.to(self.device)  # nccl reduces device tensors only
        dist_util.all_reduce_mean_([table])
        table = table.cpu()
        stats = summarize(table.numpy(), genotypes, self.search_opt['reward_mode'], num_random=len(genotypes) - 2)
        row = {'iter': current_iter, 'controller_step': self.controller_step,
               **{k: stats[k] for k in ('genotype_std', 'batch_std', 'interaction_std', 'snr_fresh', 'snr_common',
                                        'snr', 'reward_mode', 'genotypes')},
               'empty_psnr': float(table[0].mean()), 'full_psnr': float(table[1].mean())}
        for key in ('genotype_std', 'batch_std', 'interaction_std', 'snr'):
            self.log_dict[f'signal_{key}'] = row[key]
        self.log_dict['signal_full_minus_empty'] = row['full_psnr'] - row['empty_psnr']
        self._append_rows(self.signal_path, [row])

    def _trace(self, row):
        if self.search_opt['rank_trace']:
            path = osp.join(self.opt['path']['experiments_root'], f"rank{self.opt['rank']}_trace.jsonl")
            with open(path, 'a') as f:
                f.write(json.dumps(row) + '\n')

    def _append_rows(self, path, rows):
        if self.opt['rank'] != 0 or not rows:
            return
        with open(path, 'a') as f:
            f.write(''.join(json.dumps(r) + '\n' for r in rows))
            f.flush()
            os.fsync(f.fileno())

    def get_current_log(self):
        return dict(self.log_dict)

    # -------------------------------------------------------------------------------- evaluation
    def greedy_genotype(self):
        self.net_c.eval()
        genotype = self.net_c.greedy()
        self.net_c.train()
        return genotype

    def validation(self, dataloader, current_iter, tb_logger, save_img=False):
        self.val_genotype = self.greedy_genotype()
        params = count_params(self.val_genotype, **self.arch_size)
        get_root_logger().info(f'Validating the greedy genotype {self.val_genotype} ({params:,} params)')
        super().validation(dataloader, current_iter, tb_logger, save_img)

    def test(self):
        genotype = getattr(self, 'val_genotype', None) or self.greedy_genotype()
        self.net_g.eval()
        with torch.no_grad():
            self.output = self.net_g(self.lq, genotype)
        self.net_g.train()

    # ------------------------------------------------------------------------------ checkpoints
    def save(self, epoch, current_iter):
        if self.search_opt['rank_trace']:
            self._trace({'iter': current_iter, 'net_g': _digest(self.net_g), 'net_c': _digest(self.net_c)})
        self.save_network(self.net_g, 'net_g', current_iter)
        self.save_network(self.net_c, 'net_c', current_iter)
        self.save_training_state(epoch, current_iter)

    def extra_training_state(self):
        return {**super().extra_training_state(), 'reinforce': self.cri_reinforce.state_dict(),
                'search': {'controller_step': self.controller_step, 'skipped': dict(self.skipped),
                           'pending_child_bits': self.pending_child_bits.to('cpu', torch.uint8)}}

    def load_extra_training_state(self, state):
        super().load_extra_training_state(state)
        self.cri_reinforce.load_state_dict(state['reinforce'])
        self.controller_step = state['search']['controller_step']
        self.skipped = dict(state['search']['skipped'])
        pending = state['search'].get('pending_child_bits')
        if pending is not None:
            self.pending_child_bits = pending.to(self.device, torch.float32)
        self._truncate_history(state['iter'])

    def _truncate_history(self, resume_iter):
        """Drop history (and signal) rows written after the resumed checkpoint, so that none is duplicated
        (and a row cut off by a kill)."""
        if self.opt['rank'] != 0:
            return
        for path in (p for p in (self.history_path, self.signal_path) if osp.exists(p)):
            with open(path) as f:
                lines = [line.rstrip('\n') for line in f if line.strip()]
            keep = [line for line in lines if _iteration(line) <= resume_iter]
            atomic_write_text(path, ''.join(line + '\n' for line in keep))
