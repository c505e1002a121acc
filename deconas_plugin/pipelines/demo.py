"""The one-command DeCoNAS demo (``tools/demo.py``): data -> search -> derive -> retrain -> CARN -> test -> report.

Runs the whole pipeline on a machine with no dataset, on the scikit-image photos bundled with
scikit-image (``deconas_plugin.utils.embedded_data``: train / reward / test splits), in 7-8
minutes on 2 idle CPU cores, every training through the same entry points a user runs:

1. ``prepare``: the embedded photos as BasicSR folders (HR, GTmod{s}, MATLAB-bicubic LRbicx{s});
   the training split cut into sub-images with their LR and packed into LMDBs, and the reward
   split cut into reward-patch-sized sub-images (``tools/prepare_train.py``'s functions).
2. ``search``: ``python deconas_plugin/train.py -opt <out>/options/search.yml --auto_resume``,
   the option file written from ``options/demo/demo_search.yml``.
3. ``derive``: ``python tools/derive.py``: 100 genotypes from the controller, scored with the
   shared weights on the reward patches (``--scored-on reward``), the best reward kept; the
   retrain option file from ``options/demo/demo_train.yml`` with the search's data.
4. ``retrain``: the found DeCoNASNet from scratch (``train.py`` on the derived option file).
5. ``carn``: CARN (single-scale, ``multi_scale: false``; ``num_feat`` = the search's C unless
   ``--carn-feat``) with the option file ``tools/derive.py`` writes for the found network
   (``derive.training_options``: same data, iterations, batch, patch, optimiser and schedule). It
   needs no search result, so it starts in the background when the search starts and trains beside
   search, derive and retrain (output in ``<out>/logs/carn.log``); this step waits for it. On 2
   cores each process gets one thread and the results are those of the one-at-a-time run
   (``--sequential``), which takes 5-6 minutes longer. If a step fails or the demo gets
   SIGTERM, CARN's training is stopped with SIGTERM: it writes its state and the next run resumes it.
6. ``test``: ``python deconas_plugin/test.py`` for Bicubic, CARN and the found network on the
   test sets (PSNR/SSIM on Y, border = scale; images saved for the visual comparison).
7. ``report``: ``deconas_plugin.reporting.report.build_report`` into ``<out>/report``.

Reuse: a training whose experiment has ``models/net_g_latest.pth`` and whose stored option file
equals the one the demo would run is skipped; an interrupted one is resumed (``--auto_resume``);
one made with other options is archived (``<name>_archived_<time>``, as BasicSR does) and rerun.
Derivation and tests are skipped when their outputs are newer than their inputs, the report when
nothing ran and the seed-spread measurement it cites is unchanged.

Seed spread: ``--seed-spread SEED`` retrains the found network and CARN once more with ``manual_seed``
SEED (experiments ``<name>_seed<SEED>``), tests them and writes how far the two seeds land apart to
``--seed-spread-file`` (default ``benchmarks/cpu-2core/demo_seed_spread.json``, the measurement of the
default demo, and a ``.md`` page). The report cites that file beside each trained network's row when
its setting (``Demo.spread_setting``) equals the run's.

Each step prints a one-line banner with its status and elapsed time; ``<out>/demo_summary.json`` keeps them.

Every argument is checked before anything is written (``Demo.check_inputs``): a mistake is one
``error: ...`` line naming the flag, file or value, exit status 2, as for the other tools; a step that
fails later is one ``error: ...`` line naming the step and its log, exit status 1.

Experiments and test results live where BasicSR puts them (``experiments/<prefix>_*``,
``results/<prefix>_*``); ``--prefix`` (default ``demo``, ``demo_fast`` with ``--fast``) keeps
runs apart. Everything else is under ``--out``: ``data/``, ``options/``, ``logs/`` (the output of
every subprocess), ``report/``, ``demo_summary.json``.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional, Tuple

from .. import derive as derive_lib
from ..derive import plain, set_option
from ..options import OptionError, check_options
from ..reporting.markdown import seed_spread_md
from ..utils.checkpoint import atomic_write_text
from ..utils.cli import load_tool
from ..utils.logged_run import BackgroundRun, exit_on_sigterm
from ..utils.machine import default_threads, describe_machine
from ..utils.sr_data import MIN_REWARD_STD, DataToolError, write_textured_meta_info
from .search_vs_random import budget_of
from .runs import (PipelineError, Runner, mtime, prepared_test_sets, read_options, shown, test_options,
                   write_options)

ROOT = derive_lib.PROJECT_ROOT
DEMO_OPTIONS = osp.join(ROOT, 'options', 'demo')
STEPS = ('prepare', 'search', 'derive', 'retrain', 'carn', 'test', 'report')

# Budgets. The default one takes 7-8 minutes on 2 idle CPU cores (docs/demo.md); --fast is for the tests.
FAST_OVERRIDES = {
    'search': {
        'network_g.num_feat': 8, 'network_g.num_blocks': 2, 'network_g.num_nodes': 3,
        'datasets.train.batch_size_per_gpu': 4, 'datasets.train.gt_size_lr': 24,
        'search.child_steps': 10, 'search.controller_steps': 5, 'search.controller_start_iter': 10,
        'search.reward_patches': 4, 'train.total_iter': 30, 'train.scheduler.milestones': [1000],
        'logger.print_freq': 10, 'logger.save_checkpoint_freq': 10},
    'train': {'train.total_iter': 20, 'train.warmup_iter': 5, 'train.scheduler.milestones': [1000],
              'logger.print_freq': 10, 'logger.save_checkpoint_freq': 10},
}
DEFAULT_SAMPLES, FAST_SAMPLES = 100, 8
LR_PATCH, REWARD_LR_PATCH = 32, 48  # LR sizes of the training and reward patches
TRAIN_CROP, TRAIN_STEP = 192, 96  # HR sub-images of the training split
MAX_SIDE, FAST_MAX_SIDE = 512, 192  # embedded photos are centre-cropped to this
PREPARED_NAMES = {'train': 'embedded', 'reward': 'reward'}  # tools/prepare_train.py --name of each split
SEED_SPREAD_FILE = osp.join(ROOT, 'benchmarks', 'cpu-2core', 'demo_seed_spread.json')  # measured, cited by the report


def machine_text(threads: Optional[int]) -> str:
    """The machine a measurement ran on, in one line (``utils.machine.describe_machine``)."""
    import torch
    info = describe_machine(torch.device('cpu'))
    load = ', '.join(f'{x:.1f}' for x in (info['load_avg_start'] or [])) or 'unknown'
    return (f"{info['cpu']}, {info['usable_cores']} usable cores, torch {info['torch']}, "
            f"{threads or 'default'} thread(s) per process, load average {load} when written")


def fmt_s(seconds: float) -> str:
    return f'{seconds:6.1f} s' if seconds < 120 else f'{seconds:6.1f} s ({seconds / 60:.1f} min)'


class InputError(PipelineError):
    """A bad argument of the demo, found before anything is written."""


# ---------------------------------------------------------------------------------------- demo
class Demo:
    """The pipeline; ``run()`` executes the steps and returns the summary dict."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.scale = args.scale
        self.out = osp.abspath(args.out)
        self.prefix = args.prefix or ('demo_fast' if args.fast else 'demo')
        self.fast = args.fast
        self.data = osp.join(self.out, 'data_fast' if args.fast else 'data')
        # CARN trains beside search, derive and retrain (their results do not depend on it): two processes
        self.parallel = not args.sequential
        self.threads = args.threads if args.threads is not None else default_threads(2 if self.parallel else 1)
        self.runner = Runner(self.out, self.threads, args.quiet)
        self.say = self.runner.say  # to the console, even while --quiet sends the prepare step's output to its log
        self.options, self.logs = self.runner.options, self.runner.logs
        self.background: Dict[str, Optional[BackgroundRun]] = {}
        if args.num_gpu is not None:
            self.num_gpu = args.num_gpu
        else:
            self.num_gpu = {'cpu': 0, 'cuda': 1, 'auto': 'auto'}[args.device]
        import torch
        use_cuda = torch.cuda.is_available() and (self.num_gpu == 'auto' or self.num_gpu > 0)
        self.torch_device = 'cuda' if use_cuda else 'cpu'
        self.results: List[dict] = []
        self.ran_any = False
        self.t0 = None
        self.paths: Dict[str, str] = {}
        self.argv = list(getattr(args, 'argv', None) or [])

    # ---------------------------------------------------------------------------------- inputs
    def check_inputs(self):
        """Every argument, before anything is written: InputError naming the flag, file or value."""
        try:
            self._check_inputs()
        except (PipelineError, derive_lib.DeriveError, OptionError) as e:
            raise InputError(str(e)) from None

    def _check_inputs(self):
        args = self.args
        if osp.exists(self.out) and not osp.isdir(self.out):
            raise InputError(f'--out {args.out} is a file, not a folder')
        if not self.prefix or os.sep in self.prefix or self.prefix in ('.', '..'):
            raise InputError(f'--prefix {args.prefix!r} must be a plain name (it starts the experiment folders)')
        for flag, value, least in (('--num-samples', args.num_samples, 1), ('--carn-feat', args.carn_feat, 1),
                                   ('--threads', args.threads, 0), ('--num-gpu', args.num_gpu, 0)):
            if value is not None and value < least:
                raise InputError(f'{flag} must be >= {least}, got {value}')
        import torch
        if self.num_gpu not in (0, 'auto') and not torch.cuda.is_available():
            flag = f'--num-gpu {args.num_gpu}' if args.num_gpu is not None else f'--device {args.device}'
            raise InputError(f'{flag}: no CUDA GPU is visible; use --device cpu (or auto)')
        if args.search_opt:
            self._check_search_opt(args.search_opt)
        if args.train_opt:
            template = read_options(args.train_opt)
            if not isinstance((template.get('datasets') or {}).get('train'), dict):
                raise InputError(f'--train-opt {args.train_opt} has no datasets.train (with --train-opt the networks '
                                 "train on the template's data)")
            if not isinstance(template.get('train'), dict) or not template['train'].get('total_iter'):
                raise InputError(f'--train-opt {args.train_opt} has no train.total_iter (not a training option file?)')
        if args.test_sets:
            self.test_sets()  # a missing test set stops the demo now, not after the trainings
        self._check_seed_spread()

    def _check_search_opt(self, path: str):
        """``--search-opt``: a search option file of ``--scale`` that passes the pre-flight check of
        ``deconas_plugin/train.py`` (run from the project root, as the demo runs it)."""
        opt = read_options(path)
        if opt.get('model_type') != 'DeCoNASSearchModel':
            raise InputError(f'--search-opt {path} is not a search option file (model_type '
                             f'{opt.get("model_type")!r}, expected DeCoNASSearchModel)')
        if opt.get('scale') != self.scale:
            raise InputError(f"--search-opt {path} has scale {opt.get('scale')!r} but --scale is {self.scale}: "
                             f"pass --scale {opt.get('scale')}")
        if self.args.num_gpu is not None or self.args.device != 'auto':
            opt['num_gpu'] = self.num_gpu
        cwd = os.getcwd()
        os.chdir(ROOT)  # relative data paths start where the demo runs train.py
        try:
            check_options(opt)
        except OptionError as e:
            raise InputError(f'--search-opt {path}: {e}') from None
        finally:
            os.chdir(cwd)

    def _check_seed_spread(self):
        """``--seed-spread`` measures the demo's own setting with another seed; ``--seed-spread-file``, when it
        exists, is a measurement the report can read."""
        args = self.args
        own_setting = not (args.search_opt or args.train_opt or args.test_sets)
        if args.seed_spread is not None:
            if not own_setting:
                raise InputError('--seed-spread measures the demo\'s own setting: not with --search-opt, '
                                 '--train-opt or --test-sets')
            base_seed = read_options(osp.join(DEMO_OPTIONS, 'demo_train.yml')).get('manual_seed')
            if args.seed_spread == base_seed:
                raise InputError(f'--seed-spread {args.seed_spread} is the demo\'s own manual_seed; give another one')
        path = args.seed_spread_file
        if own_setting and osp.isdir(path):
            raise InputError(f'--seed-spread-file {path} is a folder, not a file')
        if own_setting and osp.isfile(path):
            try:
                with open(path) as f:
                    json.load(f)['setting']
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise InputError(f'--seed-spread-file {path} is unreadable ({e}); remake it with --seed-spread '
                                 'or pass another file') from None

    # ------------------------------------------------------------------------------- processes
    def banner(self, index: int, step: str, text: str):
        total = time.time() - self.t0
        self.say(f'[demo {index}/{len(STEPS)}] {step:<8} {text}   (demo total {total:.1f} s)')

    def start_training(self, opt_path: str, log_name: str) -> Optional[BackgroundRun]:
        """Start a training in the background (output only in ``<out>/logs/<log_name>.log``); None when its
        experiment can be reused (``Runner.training_command``)."""
        cmd = self.runner.training_command(opt_path)
        return cmd and self.runner.start(cmd, log_name, f'{log_name} (in the background)')

    def finish_training(self, run: Optional[BackgroundRun], log_name: str) -> str:
        """Wait for a ``start_training`` run, showing its progress; 'ran' / 'skipped'."""
        if run is None:
            return 'skipped'
        self.runner.wait(run, f'{log_name} (in the background)', progress=True)
        return 'ran'

    # ------------------------------------------------------------------------------------ steps
    def step_prepare(self) -> str:
        if not self.args.quiet:
            return self._prepare()
        import contextlib
        os.makedirs(self.logs, exist_ok=True)
        with open(osp.join(self.logs, 'prepare.log'), 'a') as log, contextlib.redirect_stdout(log), \
                contextlib.redirect_stderr(log):
            return self._prepare()

    def _prepare(self) -> str:
        need_train = self.args.search_opt is None
        need_test = not self.args.test_sets
        if not (need_train or need_test):
            return 'skipped'
        s, max_side = self.scale, (FAST_MAX_SIDE if self.fast else MAX_SIDE)
        marker = osp.join(self.data, 'prepared.json')
        want = {'scale': s, 'max_side': max_side, 'train': need_train, 'crop': TRAIN_CROP, 'step': TRAIN_STEP,
                'reward_crop': REWARD_LR_PATCH * s, 'min_reward_std': MIN_REWARD_STD}
        if osp.isfile(marker):
            with open(marker) as f:
                done = json.load(f)
            if all(done.get(k) == v for k, v in want.items()):
                return 'skipped'
        from ..utils.embedded_data import prepare_embedded
        t = time.time()
        split_dirs = prepare_embedded(osp.join(self.data, 'embedded'), scales=(s, ), max_side=max_side)
        self.say(f'    embedded photos (train/reward/test, MATLAB-bicubic x{s}): {time.time() - t:.1f} s')
        if need_train:
            prepare_train = load_tool('prepare_train')
            t = time.time()
            summary = prepare_train.prepare_train(
                osp.join(split_dirs['train'], 'HR'), self.prepared_dirs('train')['root'], [s],
                name=PREPARED_NAMES['train'], crop=TRAIN_CROP, step=TRAIN_STEP, n_thread=1, lmdb=True)
            self.say(f"    training sub-images + LMDB: {len(summary['keys'])} sub-images of {TRAIN_CROP} px "
                     f'({time.time() - t:.1f} s)')
            crop = REWARD_LR_PATCH * s
            reward = self.prepared_dirs('reward')
            summary = prepare_train.prepare_train(
                osp.join(split_dirs['reward'], 'HR'), reward['root'], [s], name=PREPARED_NAMES['reward'],
                crop=crop, step=crop, n_thread=1, lmdb=False)
            try:
                kept = write_textured_meta_info(reward['hr_sub'], summary['keys'], reward['meta_info'])
            except DataToolError as e:
                raise PipelineError(str(e)) from None
            self.say(f"    reward patches: {kept} of {len(summary['keys'])} sub-images of {crop} px kept "
                     f'(HR std >= {MIN_REWARD_STD} grey levels)')
        atomic_write_text(marker, json.dumps(want, indent=2) + '\n')
        return 'ran'

    def prepared_dirs(self, split: str) -> dict:
        """Where ``_prepare`` has ``tools/prepare_train.py`` cut the ``train`` or ``reward`` split: the tool's
        ``layout`` of ``<data>/<split>_sub`` (key ``root``), and the list of its textured sub-images (``meta_info``)."""
        root = osp.join(self.data, f'{split}_sub')
        dirs = load_tool('prepare_train').layout(root, PREPARED_NAMES[split], [self.scale])
        return dict(dirs, root=root, meta_info=osp.join(root, 'meta_info.txt'))

    def search_options(self) -> dict:
        s = self.scale
        if self.args.search_opt:
            opt = read_options(self.args.search_opt)
            if self.args.num_gpu is not None or self.args.device != 'auto':
                opt['num_gpu'] = self.num_gpu
            return opt
        opt = read_options(osp.join(DEMO_OPTIONS, 'demo_search.yml'))
        opt.update(name=f'{self.prefix}_search_x{s}', scale=s, num_gpu=self.num_gpu)
        opt['network_g']['upscale'] = s
        train_dirs, reward_dirs = self.prepared_dirs('train'), self.prepared_dirs('reward')
        train = opt['datasets']['train']
        train.update(dataroot_gt=train_dirs['hr_lmdb'], dataroot_lq=train_dirs[f'lr{s}_lmdb'], gt_size=LR_PATCH * s)
        val_dir = osp.join(self.data, 'embedded', 'reward')  # the whole reward images
        opt['datasets']['val'].update(dataroot_gt=osp.join(val_dir, f'GTmod{s}'),
                                      dataroot_lq=osp.join(val_dir, f'LRbicx{s}'))
        opt['search']['reward_dataset'].update(dataroot_gt=reward_dirs['hr_sub'], dataroot_lq=reward_dirs[f'lr{s}_sub'],
                                               gt_size=REWARD_LR_PATCH * s, meta_info_file=reward_dirs['meta_info'])
        opt['val']['metrics']['psnr']['crop_border'] = s
        if self.fast:
            for key, value in FAST_OVERRIDES['search'].items():
                if key == 'datasets.train.gt_size_lr':
                    train['gt_size'] = value * s
                else:
                    set_option(opt, key, value)
        return opt

    def write_search_options(self) -> str:
        """``<out>/options/search.yml`` (or the given file's base name, under which BasicSR stores it in the
        experiment); sets ``paths['search_opt']`` and ``paths['search_exp']``."""
        if 'search_opt' not in self.paths:
            opt = self.search_options()
            path = osp.join(self.options, osp.basename(self.args.search_opt) if self.args.search_opt else 'search.yml')
            src = self.args.search_opt or osp.join(DEMO_OPTIONS, 'demo_search.yml')
            write_options(path, opt, f'# Written by tools/demo.py from {osp.relpath(src, ROOT)}\n')
            self.paths['search_opt'] = path
            self.paths['search_exp'] = osp.join(ROOT, 'experiments', opt['name'])
        return self.paths['search_opt']

    def step_search(self) -> str:
        return self.runner.train_file(self.write_search_options(), 'search', 'search', bool(self.args.search_opt))

    def retrain_template(self) -> str:
        if self.args.train_opt:
            return osp.abspath(self.args.train_opt)
        opt = read_options(osp.join(DEMO_OPTIONS, 'demo_train.yml'))
        opt['scale'] = self.scale
        opt['val']['metrics']['psnr']['crop_border'] = self.scale
        if self.fast:
            for key, value in FAST_OVERRIDES['train'].items():
                set_option(opt, key, value)
        path = osp.join(self.options, 'train_template.yml')
        write_options(path, opt, '# Written by tools/demo.py from options/demo/demo_train.yml\n')
        return path

    def step_derive(self) -> str:
        exp = self.paths['search_exp']
        out_dir = osp.join(exp, 'derive')
        template = self.retrain_template()
        chosen, option = osp.join(out_dir, 'chosen.json'), osp.join(out_dir, 'train_DeCoNASNet.yml')
        self.paths['derive_dir'], self.paths['found_train_opt'] = out_dir, option
        samples = self.args.num_samples or (FAST_SAMPLES if self.fast else DEFAULT_SAMPLES)
        newest_input = max(mtime(osp.join(exp, 'models', 'net_c_latest.pth')), mtime(template),
                           mtime(self.paths['search_opt']))
        if min(mtime(chosen), mtime(option)) > newest_input:
            with open(chosen) as f:
                done = json.load(f)
            if done.get('samples') == samples and done.get('scored_on') == 'reward':
                return 'skipped'
        cmd = [sys.executable, osp.join(ROOT, 'tools', 'derive.py'), '-opt', self.paths['search_opt'],
               '--num-samples', str(samples), '--seed', '0', '--scored-on', 'reward', '--template', template,
               '--device', self.torch_device,
               *(a for item in self.derive_overrides(f'{self.prefix}_found_x{self.scale}') for a in ('--set', item))]
        if not self.args.train_opt:
            cmd.append('--data-from-search')
        self.runner.run_cmd(cmd, 'derive', 'derive')
        return 'ran'

    def step_retrain(self) -> str:
        return self.runner.train_file(self.paths['found_train_opt'], 'retrain', 'retrain')

    def derive_overrides(self, name: str) -> List[str]:
        """The ``--set`` items the demo gives ``tools/derive.py`` for the found network's option file."""
        return [f'name={name}', f'num_gpu={self.num_gpu}']

    def carn_options(self) -> dict:
        """CARN's option file: the one ``tools/derive.py`` writes for the found network (same template, search
        data and overrides: ``derive.training_options``) with CARN as ``network_g``. It needs no search result,
        so CARN can train while the search runs."""
        search_opt = read_options(self.write_search_options())
        sizes = derive_lib.network_sizes(search_opt)
        network_g = {'type': 'CARN', 'num_in_ch': sizes['num_in_ch'], 'num_out_ch': sizes['num_out_ch'],
                     'num_feat': self.args.carn_feat or sizes['num_feat'], 'upscale': self.scale, 'multi_scale': False}
        name = f'{self.prefix}_CARN_x{self.scale}'
        return derive_lib.training_options(network_g, search_opt, read_options(self.retrain_template()), name,
                                           data_from_search=not self.args.train_opt,
                                           overrides=self.derive_overrides(name))

    def write_carn_options(self) -> str:
        path = osp.join(self.options, 'train_CARN.yml')
        write_options(path, self.carn_options(), '# Written by tools/demo.py: CARN (single-scale, multi_scale: false) '
                      'with the budget of the found network\'s retrain (same iterations, batch, patch, schedule)\n')
        self.paths['carn_train_opt'] = path
        return path

    def start_carn(self, index: int):
        """Start CARN's training beside the search, derivation and retrain (``--sequential``: not)."""
        self.banner(index, 'carn', 'started beside search, derive and retrain')
        self.background['carn'] = self.start_training(self.write_carn_options(), 'carn')

    def step_carn(self) -> str:
        if 'carn' in self.background:
            return self.finish_training(self.background['carn'], 'carn')
        return self.runner.train_file(self.write_carn_options(), 'carn', 'carn')

    def test_sets(self) -> List[dict]:
        if not self.args.test_sets:
            return prepared_test_sets([osp.join(self.data, 'embedded', 'test')], self.scale, 'embedded_test')
        return prepared_test_sets(self.args.test_sets, self.scale)

    def test_methods(self) -> List[dict]:
        """(key, label, network_g, checkpoint) of the tested methods, Bicubic first."""
        found = read_options(self.paths['found_train_opt'])
        carn = read_options(self.paths['carn_train_opt'])

        def ckpt(opt):
            return osp.join(ROOT, 'experiments', opt['name'], 'models', 'net_g_latest.pth')

        carn_net = carn['network_g']
        return [
            {'key': 'bicubic', 'label': 'Bicubic', 'network_g': {'type': 'Bicubic', 'upscale': self.scale},
             'checkpoint': None},
            {'key': 'carn', 'label': f"CARN (single-scale, C={carn_net['num_feat']})",
             'network_g': plain(carn_net), 'checkpoint': ckpt(carn)},
            {'key': 'found', 'label': 'DeCoNASNet (found)', 'network_g': plain(found['network_g']),
             'checkpoint': ckpt(found)},
        ]

    def run_test(self, method: dict, sets: List[dict]) -> Tuple[str, str, dict]:
        """Write ``<out>/options/test_<key>.yml`` for ``method`` (a ``test_methods`` dict) on ``sets`` and run
        it (``Runner.test_file``: not when its log is newer than the option file and the checkpoint);
        returns (option file, 'ran' / 'skipped', {set: {metric: value}})."""
        train = {'scale': self.scale, 'num_gpu': self.num_gpu, 'network_g': method['network_g']}
        opt = test_options(train, method['checkpoint'], sets, f"{self.prefix}_test_{method['key']}_x{self.scale}",
                           save_img=True)
        path = write_options(osp.join(self.options, f"test_{method['key']}.yml"), opt,
                             f"# Written by tools/demo.py: test {method['label']}\n")
        return (path, *self.runner.test_file(path, f"test_{method['key']}", f"test {method['label']}"))

    def step_test(self) -> str:
        sets = self.test_sets()
        statuses = []
        self.paths['test_opts'] = []
        for method in self.test_methods():
            path, status, _ = self.run_test(method, sets)
            self.paths['test_opts'].append((method['label'], path))
            statuses.append(status)
        return 'ran' if 'ran' in statuses else 'skipped'

    def training_text(self) -> str:
        """One sentence: how the found network and CARN were trained (the results table's caption)."""
        opt = read_options(self.paths['found_train_opt'])
        train, budget = opt['train'], budget_of(opt)
        optim, sched = train.get('optim_g') or {}, budget['scheduler'] or {}
        warmup = train.get('warmup_iter') or -1
        lr = f"{optim.get('type', '?')} {optim.get('lr', float('nan')):g}"
        if warmup > 0:
            lr += f', reached by a linear warm-up over {warmup:,} iterations'
        if sched.get('type') == 'MultiStepLR':
            steps = ' and '.join(f'{m:,}' for m in sched.get('milestones', []) if m < train['total_iter'])
            lr += f", times {sched.get('gamma')} at {steps}" if steps else ', constant'
        elif sched:
            lr += f", {sched.get('type')}"
        return (f"CARN and the found network trained with one schedule: {budget['total_iter']:,} iterations, batch "
                f"{budget['batch_size_per_gpu'] or '?'}, LR patch {budget['lr_patch'] or '?'}, {lr}; manual_seed "
                f"{opt.get('manual_seed')}.")

    # ---------------------------------------------------------------------------- seed spread
    def spread_setting(self) -> Optional[dict]:
        """Everything a seed-spread measurement depends on besides the seed (and the found genotype), or
        None when the demo runs a user's option files or test sets (the stored measurement is the demo's)."""
        if self.args.search_opt or self.args.train_opt or self.args.test_sets:
            return None
        found, carn = read_options(self.paths['found_train_opt']), read_options(self.paths['carn_train_opt'])
        data = found['datasets']['train']
        test_gt = self.test_sets()[0]['dataroot_gt']
        return {'scale': self.scale, 'fast': self.fast, 'max_side': FAST_MAX_SIDE if self.fast else MAX_SIDE,
                'test_images': sorted(osp.splitext(n)[0] for n in os.listdir(test_gt) if n.endswith('.png')),
                'train': plain(found['train']), 'batch_size_per_gpu': data['batch_size_per_gpu'],
                'gt_size': data['gt_size'],
                'found_space': {k: found['network_g'].get(k) for k in ('num_blocks', 'num_nodes', 'num_feat')},
                'carn': plain(carn['network_g'])}

    def seed_spread(self) -> Optional[dict]:
        """The stored seed-spread measurement (``--seed-spread-file``) when it was made for this setting
        (``spread_setting``), with a note when the found genotype differs from the measured one; else None."""
        path = self.args.seed_spread_file
        setting = self.spread_setting()
        if setting is None or not osp.isfile(path):
            return None
        try:
            with open(path) as f:
                stored = json.load(f)
            same = stored['setting'] == setting
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise PipelineError(f'seed-spread file {path} is unreadable ({e}); remake it with --seed-spread') from None
        if not same:
            return None
        cited = {k: stored[k] for k in ('date', 'machine', 'command', 'seeds', 'networks')}
        cited['file'] = shown(path)
        genotype = read_options(self.paths['found_train_opt'])['network_g'].get('genotype')
        cited['note'] = (None if stored.get('genotype') == genotype else
                         f"The found network's spread was measured on genotype `{stored.get('genotype')}`; this run "
                         f"found `{genotype}` (same N, M, C).")
        return cited

    def measure_seed_spread(self, seed: int) -> dict:
        """Retrain the found network and CARN with ``manual_seed`` = ``seed`` (everything else as the demo's),
        test them like the demo's, and write the measurement (JSON and Markdown) to ``--seed-spread-file``."""
        from ..reporting.metrics import per_image_metrics, read_test_option
        setting = self.spread_setting()
        if setting is None:
            raise PipelineError('--seed-spread measures the demo\'s own setting: not with --search-opt, '
                                '--train-opt or --test-sets')
        trainings = {}  # key: (option file, demo's seed, its name)
        for key in ('found', 'carn'):
            source = self.paths[f'{key}_train_opt']
            opt = read_options(source)
            base_seed = opt['manual_seed']
            if seed == base_seed:
                raise PipelineError(f'--seed-spread {seed} is the demo\'s own manual_seed; give another one')
            opt['manual_seed'] = seed
            opt['name'] = f"{opt['name']}_seed{seed}"
            path = osp.join(self.options, f'train_{key}_seed{seed}.yml')
            write_options(path, opt, f'# Written by tools/demo.py --seed-spread: {osp.basename(source)} '
                          f'with manual_seed {seed}\n')
            trainings[key] = (path, base_seed, opt['name'])
        # the two trainings run side by side, as in the demo
        self.say(f'    seed spread: training carn with manual_seed {seed}')
        carn_path = trainings['carn'][0]
        carn_run = self.start_training(carn_path, f'carn_seed{seed}') if self.parallel else None
        self.say(f'    seed spread: training found with manual_seed {seed}')
        self.runner.train_file(trainings['found'][0], f'found_seed{seed}', f'found_seed{seed}')
        if self.parallel:
            self.finish_training(carn_run, f'carn_seed{seed}')
        else:
            self.runner.train_file(carn_path, f'carn_seed{seed}', f'carn_seed{seed}')
        sets, demo_methods, networks = self.test_sets(), {m['key']: m for m in self.test_methods()}, {}
        for key, (_, base_seed, name) in trainings.items():
            method = demo_methods[key]
            row = {'label': method['label'], 'seeds': [base_seed, seed], 'psnr': [], 'ssim': [], 'per_image': {}}
            reseeded = dict(method, key=f'{key}_seed{seed}',
                            checkpoint=osp.join(ROOT, 'experiments', name, 'models', 'net_g_latest.pth'))
            for s, tested in ((base_seed, method), (seed, reseeded)):  # the demo's own test is reused
                path, _, metrics = self.run_test(tested, sets)
                row['psnr'].append(metrics[sets[0]['name']]['psnr'])
                row['ssim'].append(metrics[sets[0]['name']]['ssim'])
                row['per_image'][str(s)] = per_image_metrics(read_test_option(path), sets[0], self.scale)
            row['psnr_spread'] = round(abs(row['psnr'][0] - row['psnr'][1]), 4)
            row['ssim_spread'] = round(abs(row['ssim'][0] - row['ssim'][1]), 4)
            networks[method['network_g']['type']] = row
        result = {'date': time.strftime('%Y-%m-%d'), 'machine': machine_text(self.threads),
                  'command': 'python tools/demo.py ' + ' '.join(self.argv), 'setting': setting,
                  'genotype': read_options(self.paths['found_train_opt'])['network_g'].get('genotype'),
                  'test_set': sets[0]['name'], 'seeds': networks['CARN']['seeds'], 'networks': networks}
        path = self.args.seed_spread_file
        os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
        atomic_write_text(path, json.dumps(result, indent=2) + '\n')
        atomic_write_text(osp.splitext(path)[0] + '.md', seed_spread_md(result))
        self.say(f'    seed spread written to {path}')
        return result

    def step_report(self) -> str:
        report_dir = osp.join(self.out, 'report')
        seed_spread = self.seed_spread()
        if not self.ran_any and self._reported_seed_spread(osp.join(report_dir, 'report.json')) == [seed_spread]:
            return 'skipped'
        from ..reporting.report import build_report
        timings = {r['step']: r['made_in_seconds'] for r in self.results if r.get('made_in_seconds') is not None}
        carn = read_options(self.paths['carn_train_opt'])
        found = read_options(self.paths['found_train_opt'])
        notes = [
            f"CARN is the single-scale model (multi_scale: false) with num_feat {carn['network_g']['num_feat']}, "
            'trained with the same option file as the found network (same iterations, batch, patch, optimiser and '
            f"schedule: {found['train']['total_iter']} iterations).",
        ]
        if self.parallel:
            notes.append('CARN trains in the background beside search, derive and retrain (one process each; '
                         '`tools/demo.py --sequential`: after them), so the step times add up to more than the '
                         'demo\'s wall time.')
        if not self.args.search_opt:
            notes.append('Demo budget: a short search and retrain on the embedded scikit-image photos; the numbers '
                         'show that the pipeline works, not the paper\'s results (there, after a 12-GPU-hour search '
                         'and 1M retrain iterations on DIV2K, DeCoNASNet scores 37.96 dB on Set5 at x2 with 1,713K '
                         'parameters, CARN 37.76 dB, bicubic 33.66 dB).')
        build_report(self.paths['search_exp'], report_dir, test_opts=self.paths['test_opts'],
                     search_opt=self.paths['search_opt'], derive_dir=self.paths['derive_dir'],
                     timings=timings or None, notes=notes, training=self.training_text(), seed_spread=seed_spread,
                     below_bicubic={'iterations': found['train']['total_iter'], 'demo_budget': not self.args.train_opt},
                     complexity_cache=self.args.complexity_cache or osp.join(self.out, 'complexity_cache.json'))
        return 'ran'

    @staticmethod
    def _reported_seed_spread(report_json: str) -> list:
        """[the seed spread an existing report cites], or [] when there is no readable report."""
        try:
            with open(report_json) as f:
                return [json.load(f)['results']['seed_spread']]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    # -------------------------------------------------------------------------------------- run
    def run(self) -> dict:
        self.t0 = time.time()
        self.check_inputs()
        os.makedirs(self.options, exist_ok=True)
        threads = f'{self.threads} thread(s) per process' if self.threads else "PyTorch's default threads"
        self.say(f'DeCoNAS demo: x{self.scale}, {"fast" if self.fast else "default"} budget, out {self.out}, '
                 f'experiments {self.prefix}_*, device {self.torch_device} (num_gpu {self.num_gpu}), {threads}')
        with exit_on_sigterm():  # `kill` stops the running step and the background training cleanly
            try:
                self._run_steps()
                if self.args.seed_spread is not None:
                    t = time.time()
                    self.say(f'[demo] seed spread: the found network and CARN again with manual_seed '
                             f'{self.args.seed_spread}')
                    try:
                        self.measure_seed_spread(self.args.seed_spread)
                    except PipelineError:
                        self._write_summary(failed='seed-spread')
                        raise
                    self.ran_any = True
                    self.step_report()  # the report cites the new measurement
                    self.say(f'[demo] seed spread measured and report rewritten in {time.time() - t:.1f} s')
            finally:
                self.runner.stop_all()
        summary = self._write_summary()
        self.say('\nstep      status   time')
        for r in self.results:
            beside = f"   (beside {', '.join(r['beside'])})" if r.get('beside') else ''
            self.say(f"{r['step']:<9} {r['status']:<8} {fmt_s(r['seconds'])}{beside}")
        self.say(f"{'total':<9} {'':<8} {fmt_s(summary['total_seconds'])}")
        report_md = osp.join(self.out, 'report', 'report.md')
        table = osp.join(self.out, 'report', 'results_table.md')
        if osp.isfile(table):
            with open(table) as f:
                self.say('\n' + f.read())
        self.say(f'report: {report_md}')
        return summary

    def _run_steps(self):
        previous = self._previous_timings()
        for index, step in enumerate(STEPS, 1):
            if step == 'search' and self.parallel:
                self.start_carn(STEPS.index('carn') + 1)
            background = self.background.get(step)
            self.banner(index, step, 'started' if step not in self.background else
                        'reused' if background is None else 'running' if background.poll() is None else 'ended')
            t = time.time()
            try:
                status = getattr(self, f'step_{step}')()
            except PipelineError:
                self.banner(index, step, f'FAILED after {background.seconds if background else time.time() - t:.1f} s')
                self._write_summary(failed=step)
                raise
            self.check_background()
            seconds = round(background.seconds if background else time.time() - t, 2)
            self.ran_any |= status == 'ran'
            made_in = seconds if status == 'ran' else previous.get(step)
            result = {'step': step, 'status': status, 'seconds': seconds, 'made_in_seconds': made_in}
            beside = ''
            if background:
                result['beside'] = list(STEPS[STEPS.index('search'):index - 1])
                beside = f" (beside {', '.join(result['beside'][:-1])} and {result['beside'][-1]})"
            self.results.append(result)
            self.banner(index, step, f'{status} in {seconds:.1f} s{beside}')

    def check_background(self):
        """Raise PipelineError, with its log's last error line, as soon as a background training has failed."""
        for step, run in self.background.items():
            if step in STEPS and run is not None and run.poll() not in (None, 0):
                self.banner(STEPS.index(step) + 1, step, f'FAILED after {run.seconds:.1f} s (in the background)')
                self._write_summary(failed=step)
                self.finish_training(run, step)

    def _previous_timings(self) -> Dict[str, float]:
        """Seconds each step took in the run that made its outputs (from the last demo_summary.json)."""
        path = osp.join(self.out, 'demo_summary.json')
        try:
            with open(path) as f:
                steps = json.load(f)['steps']
            return {r['step']: r['made_in_seconds'] for r in steps if r.get('made_in_seconds') is not None}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def _write_summary(self, failed: Optional[str] = None) -> dict:
        summary = {'steps': self.results, 'total_seconds': round(time.time() - self.t0, 2), 'failed': failed,
                   'fast': self.fast, 'scale': self.scale, 'prefix': self.prefix, 'threads': self.threads,
                   'device': self.torch_device, 'num_gpu': self.num_gpu,
                   'experiments': sorted({osp.basename(p) for p in self._experiment_dirs()}),
                   'report': osp.join(self.out, 'report', 'report.md')}
        atomic_write_text(osp.join(self.out, 'demo_summary.json'), json.dumps(summary, indent=2) + '\n')
        return summary

    def _experiment_dirs(self):
        for key in ('search_opt', 'found_train_opt', 'carn_train_opt'):
            if key in self.paths and osp.isfile(self.paths[key]):
                yield osp.join(ROOT, 'experiments', read_options(self.paths[key])['name'])


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='One-command DeCoNAS demo: embedded data -> search -> derive -> retrain -> CARN -> test -> '
        'report (7-8 minutes on 2 CPU cores).')
    p.add_argument('--out', default='demo_out', help='output folder (default: demo_out)')
    p.add_argument('--scale', type=int, default=2, choices=(2, 3, 4))
    p.add_argument('--fast', action='store_true', help='a much smaller budget (about a minute; used by the tests)')
    p.add_argument('--prefix', help='experiment/result name prefix (default: demo, or demo_fast with --fast)')
    p.add_argument('--search-opt', help='search option file to run instead of the demo search (real data, e.g. '
                   'options/search/search_N4_M4.yml); used as is (its name, data and budget)')
    p.add_argument('--train-opt', help='retrain template for tools/derive.py (e.g. '
                   'options/train/train_DeCoNASNet_x2.yml: its data and budget); CARN trains with the same '
                   "settings. Default: options/demo/demo_train.yml with the search's data")
    p.add_argument('--test-sets', nargs='+', metavar='FOLDER',
                   help='prepared test sets (GTmod<s>/LRbicx<s>, tools/prepare_benchmark.py), e.g. datasets/Set5 '
                   'datasets/Set14; default: the embedded test split')
    p.add_argument('--num-samples', type=int, help=f'genotypes sampled by the derivation (default {DEFAULT_SAMPLES}; '
                   f'{FAST_SAMPLES} with --fast)')
    p.add_argument('--carn-feat', type=int, help="CARN's num_feat (default: the found network's C)")
    p.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto',
                   help='auto: num_gpu auto (every visible GPU, else the CPU); cpu: num_gpu 0; cuda: num_gpu 1')
    p.add_argument('--num-gpu', type=int, help='num_gpu written into the option files (overrides --device)')
    p.add_argument('--threads', type=int, help='OMP/MKL threads per process (default: 1 on a machine with at most 2 '
                   'cores or a busy one, else the cores halved between the two trainings that run at once, or '
                   "PyTorch's default with --sequential; an OMP_NUM_THREADS of the environment wins; 0: PyTorch's "
                   'default)')
    p.add_argument('--complexity-cache', help='JSON cache of params/MACs of the report (default: '
                   '<out>/complexity_cache.json; counting RDN alone takes ~20 s on 2 cores)')
    p.add_argument('--seed-spread', type=int, metavar='SEED',
                   help='after the demo, retrain the found network and CARN with manual_seed SEED, test them and '
                   'write how far the two seeds land apart to --seed-spread-file (the report cites it)')
    p.add_argument('--seed-spread-file', default=SEED_SPREAD_FILE,
                   help='seed-spread measurement the report cites when it was made for the same setting, and that '
                   f'--seed-spread writes (with a .md page beside it); default {osp.relpath(SEED_SPREAD_FILE, ROOT)}')
    p.add_argument('--sequential', action='store_true',
                   help='train CARN after the retrain instead of beside search, derive and retrain (one process at '
                   'a time; on 2 cores the demo takes 5-6 minutes longer)')
    p.add_argument('--quiet', action='store_true', help='subprocess output only into <out>/logs/, not the console')
    return p.parse_args(argv)


def main(argv=None) -> dict:
    """Run the demo; a bad argument prints one ``error:`` line and exits 2 (nothing written), a failed
    step one ``error:`` line naming it and exits 1."""
    args = parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return Demo(args).run()
    except (PipelineError, derive_lib.DeriveError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2 if isinstance(e, InputError) else 1)
