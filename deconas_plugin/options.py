"""The option file: the sections the models read with their defaults, and every check of them.

The ``search`` section (``SEARCH_DEFAULTS``, ``search_options``), ``network_c``
(``controller_options``), ``train.autocast`` (``autocast_dtype``) and ``train.compile``
(``compile_settings``) are read by the models (``models/``) through the functions here, which raise
``OptionError`` naming the key; ``check_options`` checks a whole option file before a run, and
``preflight()`` (called by ``train.py``/``test.py``) prints the first mistake as one ``error: ...``
line and exits with status 2, before BasicSR creates the experiment folder: BasicSR would fail deep
inside a loader or a network with a traceback.
"""
import inspect
import os
import os.path as osp
import sys
from typing import Dict, List, Optional

import torch
from basicsr.utils import scandir
from basicsr.utils.registry import ARCH_REGISTRY
from PIL import Image

from .latency import LatencyTableError
from .search_cost import SearchCost
from .utils.dist import DEFAULT_TIMEOUT_S
from .utils.option_file import read_option_file


class OptionError(ValueError):
    """A mistake in an option file or in the data it points to."""


SEARCH_DEFAULTS = {
    'child_steps': 1000,  # child (shared-weight) iterations between two controller phases
    'controller_steps': 100,  # REINFORCE steps per controller phase
    'controller_start_iter': 5000,  # child-only warm-up before the first controller phase
    'alpha': 0.0,  # complexity penalty weight: R = PSNR - alpha * cost / cost_max
    'penalty': 'params',  # the cost: params (paper), macs, or latency (ms from latency_table); see search_cost.py
    'macs_lr_size': None,  # [h, w] of the LR input MACs are counted on; None: the LR of a 1280x720 output
    'latency_table': None,  # penalty latency: a table of this space from tools/latency_table.py
    'reward_patches': 10,  # validation patches per reward (a batch)
    'reward_crop_border': None,  # pixels cropped before the reward PSNR; None: the scale
    'reward_dataset': None,  # BasicSR dataset options of the reward-validation patches (required)
    # The reward the controller learns from (docs/search-evaluation.md, "Does the search search?": measured on
    # the demo's space)
    'reward_mode': 'common',  # 'common': one draw of patches per phase for every step; 'fresh': a draw per step (paper)
    'baseline_samples': 4,  # >0: at each phase start the baseline restarts at the mean reward of this many
    #                         policy samples scored on the phase's common patches (reward_mode common only)
    'signal_probe': 4,  # >0: at each phase, this many random genotypes (+ empty and full) on 2 fixed batches
    'history_file': 'search_history.jsonl',  # in the experiment folder
    'signal_file': 'search_signal.jsonl',  # per-phase rows of the signal probe, in the experiment folder
    'rank_trace': False,  # debugging: every rank appends its genotypes to rank<r>_trace.jsonl
}


def controller_options(opt):
    """``network_c`` of a search option file, its M, N and fusion flag defaulting to network_g's."""
    net_g = opt['network_g']
    if net_g.get('type') != 'DeCoNetSupernet':
        raise OptionError(f"a DeCoNAS search needs network_g type DeCoNetSupernet, got {net_g.get('type')!r}")
    net_c = dict(opt.get('network_c') or {})
    net_c.setdefault('type', 'DeCoNASController')
    for key, default in (('num_nodes', 4), ('num_blocks', 4), ('feature_fusion_search', False)):
        net_c.setdefault(key, net_g.get(key, default))
        if net_c[key] != net_g.get(key, default):
            raise OptionError(f'network_c.{key} = {net_c[key]} differs from network_g.{key} = '
                              f'{net_g.get(key, default)}')
    return net_c


AUTOCAST_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
AUTOCAST_VALUES = '~ (or false: fp32, the default), bf16 or fp16'


def autocast_dtype(value, device_type: str = 'cuda', why: str = ''):
    """The dtype of ``train.autocast``: None for ``~``/false (fp32), bfloat16 for bf16, float16 for fp16,
    which needs CUDA: on another ``device_type`` (``why``: how the run got there) it raises."""
    if value is None or value is False:
        return None
    if not isinstance(value, str) or value not in AUTOCAST_DTYPES:
        raise OptionError(f'train.autocast must be {AUTOCAST_VALUES}, got {value!r}')
    if value == 'fp16' and device_type != 'cuda':
        raise OptionError(f'train.autocast: fp16 needs CUDA (with a GradScaler), and this run is on the '
                          f'{"CPU" if device_type == "cpu" else device_type}{f" ({why})" if why else ""}; '
                          'use autocast: bf16 on a CPU (or ~ for fp32)')
    return AUTOCAST_DTYPES[value]


COMPILE_VALUES = ('~, auto or false (eager, the default), true (torch.compile: mode reduce-overhead on CUDA, torch\'s '
                  'default mode elsewhere), or a mapping of torch.compile arguments (mode, backend, fullgraph, '
                  'dynamic, options)')
COMPILE_KEYS = ('mode', 'backend', 'fullgraph', 'dynamic', 'options')


def compile_settings(value, device_type: str):
    """The ``torch.compile`` keyword arguments of ``train.compile``, or None for an eager training step.

    ``~``/``auto``/``false``: eager, on every device (no GPU measurement has shown a compiled step to be
    faster and as correct; ``tools/gpu_evidence.py --stage speed`` measures it); ``true``: compiled
    (``mode='reduce-overhead'``, CUDA graphs of the forward and backward pass, on CUDA; torch's default
    mode elsewhere); a mapping: those arguments.
    """
    if value is None or value is False or value == 'auto':
        return None
    if value is True:
        return {'mode': 'reduce-overhead'} if device_type == 'cuda' else {}
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(COMPILE_KEYS))
        if unknown:
            raise OptionError(f'train.compile: unknown torch.compile argument(s) {unknown}; '
                              f'known: {list(COMPILE_KEYS)}')
        return dict(value)
    raise OptionError(f'train.compile must be {COMPILE_VALUES}, got {value!r}')


SCALES = (2, 3, 4)
VERIFY_MAX_FILES = 3000  # full PNG verification of folders up to this size (a loader error names larger ones)
REMOVED_KEYS = {  # key -> what replaced it
    'train.cuda_graph': 'train.compile: true (on CUDA, torch.compile in mode reduce-overhead replays CUDA graphs)'}


def _accepted_args(cls) -> Optional[List[str]]:
    params = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.name != 'self']


def _checkpoint_weights(opt: dict, key: str, path: str, state) -> dict:
    """The weights BasicSR's ``load_network`` takes from checkpoint ``state`` of ``path.pretrain_<key>``:
    ``state[param_key]`` (``path.param_key_<x>``, default params; params when that key is absent), or
    the whole file for ``param_key_<x>: ~`` (a plain state dict)."""
    name = f'param_key_{key[len("network_"):]}'
    given = opt.get('path') or {}
    param_key = given.get(name, 'params')
    if not isinstance(state, dict):
        raise OptionError(f'path.pretrain_{key}: {path} holds a {type(state).__name__}, not a state dict of weights')
    if param_key is None:
        wrapped = sorted(str(k) for k, v in state.items() if isinstance(v, dict))
        if wrapped:
            raise OptionError(f'path.{name} = ~ loads the whole of {path} as weights, but it holds {wrapped}: '
                              f'set {name}: {"params" if "params" in wrapped else wrapped[0]}')
        return state
    if param_key not in state and 'params' in state:
        param_key = 'params'  # BasicSR falls back to params (e.g. for a missing params_ema)
    if param_key not in state or not isinstance(state[param_key], dict):
        shown = sorted(map(str, state))
        default = '' if name in given else ' (the default)'
        raise OptionError(f'path.{name} = {param_key}{default}: {path} has no {param_key!r} entry (its keys: '
                          f'{shown[:3]}{" ..." if len(shown) > 3 else ""}); for a plain state dict set {name}: ~')
    return state[param_key]


def check_network(opt: dict, key: str, net_opt: Optional[dict] = None):
    """Build ``opt[key]`` (or ``net_opt``); unknown type/keys, bad values and unfit checkpoints raise."""
    net_opt = dict(opt[key] if net_opt is None else net_opt)
    arch = net_opt.pop('type', None)
    if arch is None:
        raise OptionError(f'{key}: missing "type" (e.g. type: DeCoNASNet)')
    try:
        cls = ARCH_REGISTRY.get(arch)
    except KeyError:
        raise OptionError(f'{key}.type: unknown network {arch!r}; registered: {", ".join(sorted(ARCH_REGISTRY._obj_map))}'
                          ) from None
    accepted = _accepted_args(cls)
    if accepted is not None:
        unknown = sorted(set(net_opt) - set(accepted))
        if unknown:
            raise OptionError(f'{key}: unknown option(s) {unknown} for {arch}; accepted: {accepted}')
        params = inspect.signature(cls.__init__).parameters
        missing = [n for n in accepted if params[n].default is inspect.Parameter.empty and n not in net_opt]
        if missing:
            raise OptionError(f'{key}: {arch} needs {missing}')
    if 'upscale' in net_opt and net_opt['upscale'] not in SCALES:
        raise OptionError(f"{key}.upscale must be 2, 3 or 4, got {net_opt['upscale']!r}")
    if 'upscale' in net_opt and 'scale' in opt and net_opt['upscale'] != opt['scale']:
        raise OptionError(f"{key}.upscale = {net_opt['upscale']} differs from scale = {opt['scale']}")
    try:
        net = cls(**net_opt)
    except (ValueError, TypeError) as e:
        raise OptionError(f'{key} ({arch}): {e}') from None
    path = (opt.get('path') or {}).get(f'pretrain_{key}')
    if path:
        if not osp.isfile(path):
            raise OptionError(f'path.pretrain_{key}: no such checkpoint file: {path}')
        try:
            state = torch.load(path, map_location='cpu', weights_only=False)
        except Exception as e:  # noqa: BLE001
            raise OptionError(f'path.pretrain_{key}: cannot read {path} ({e}); truncated or not a checkpoint') from None
        state = _checkpoint_weights(opt, key, path, state)
        own = net.state_dict()
        strict = (opt.get('path') or {}).get(f'strict_load_{key[len("network_"):]}', True)
        for name, tensor in own.items():
            theirs = state.get(name, state.get(f'module.{name}'))
            if theirs is None:
                if strict:
                    raise OptionError(f'path.pretrain_{key}: {path} has no weight {name!r}: it was saved for another '
                                      f'network (different genotype, num_blocks N, num_nodes M or num_feat C?)')
            elif tuple(theirs.shape) != tuple(tensor.shape):
                raise OptionError(
                    f'path.pretrain_{key}: {path} does not fit {key}: {name} is {tuple(theirs.shape)} in the checkpoint '
                    f'but {tuple(tensor.shape)} in the network (different genotype, N, M or C?)')
        extra = sorted(k for k in state if (k[len('module.'):] if k.startswith('module.') else k) not in own)
        if strict and extra:  # BasicSR's strict load_state_dict rejects unexpected keys too
            raise OptionError(f'path.pretrain_{key}: {path} has weight(s) {extra[:3]} that {key} lacks: it was saved '
                              f'for another network (different genotype, num_blocks N, num_nodes M or num_feat C?)')
    return net


def _image_files(folder: str) -> List[str]:
    return sorted(scandir(folder, full_path=True))


def _read_meta(lmdb_path: str) -> Dict[str, tuple]:
    meta = osp.join(lmdb_path, 'meta_info.txt')
    if not osp.isfile(osp.join(lmdb_path, 'data.mdb')):
        raise OptionError(f'{lmdb_path} is not an LMDB (no data.mdb): make it with tools/prepare_train.py')
    if not osp.isfile(meta):
        raise OptionError(f'{meta} is missing: BasicSR reads the LMDB keys from it (tools/prepare_train.py writes it)')
    out = {}
    with open(meta) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            try:
                h, w, c = (int(v) for v in parts[1].strip('()').split(','))
            except (IndexError, ValueError):
                raise OptionError(f'{meta}: malformed line {line.strip()!r} (expected "<key>.png (h,w,c) <level>")'
                                  ) from None
            out[osp.splitext(parts[0])[0]] = (h, w)
    if not out:
        raise OptionError(f'{meta} lists no image: the LMDB is empty; rebuild it with tools/prepare_train.py')
    return out


def _folder_sizes(folder: str, verify: bool) -> Dict[str, tuple]:
    out = {}
    for path in _image_files(folder):
        try:
            with Image.open(path) as img:
                w, h = img.size
                if verify:
                    img.verify()  # checks the whole file (PNG chunk CRCs): truncated or corrupt -> error
        except Exception as e:  # noqa: BLE001
            raise OptionError(f'{path}: corrupt or truncated image ({e}); replace or remove it') from None
        out[osp.splitext(osp.basename(path))[0]] = (h, w)
    if not out:
        raise OptionError(f'{folder} has no image')
    return out


def check_dataset(where: str, dataset_opt: dict, scale: int, gt_size: Optional[int] = None):
    """A PairedImageDataset's folders or LMDBs exist, pair up, have the scale's sizes, and fit the patch."""
    if dataset_opt.get('type') != 'PairedImageDataset':
        return
    backend = (dataset_opt.get('io_backend') or {}).get('type', 'disk')
    sizes = {}
    for key in ('dataroot_gt', 'dataroot_lq'):
        path = dataset_opt.get(key)
        if not path:
            raise OptionError(f'{where}.{key} is missing')
        if not osp.exists(path):
            raise OptionError(f'{where}.{key}: no such folder {path!r} (relative paths start at {os.getcwd()}); '
                              f'prepare it with tools/prepare_benchmark.py or tools/prepare_train.py')
        if backend == 'lmdb':
            sizes[key] = _read_meta(path)
        else:
            verify = len(os.listdir(path)) <= VERIFY_MAX_FILES
            sizes[key] = _folder_sizes(path, verify)
    gt, lq = sizes['dataroot_gt'], sizes['dataroot_lq']
    tmpl = dataset_opt.get('filename_tmpl', '{}')
    for name, (h, w) in lq.items():
        gt_name = tmpl.format(name)
        if gt_name not in gt:
            raise OptionError(f"{where}: LR image {name!r} has no HR partner {gt_name!r} in {dataset_opt['dataroot_gt']}")
        if gt[gt_name] != (h * scale, w * scale):
            gh, gw = gt[gt_name]
            raise OptionError(f'{where}: {name}: HR is {gw}x{gh} but LR is {w}x{h}; at scale {scale} HR must be '
                              f'{w * scale}x{h * scale} (modcrop the HR and remake the LR with tools/prepare_benchmark.py)')
        if gt_size and min(gt[gt_name]) < gt_size:
            gh, gw = gt[gt_name]
            raise OptionError(f'{where}: {gt_name} ({gw}x{gh}) is smaller than the training patch gt_size = {gt_size}; '
                              f'lower gt_size or remove the image')


def search_options(opt: dict) -> dict:
    """The ``search`` section of a search option file with its defaults (``SEARCH_DEFAULTS``), checked."""
    search = opt.get('search') or {}
    unknown = sorted(set(search) - set(SEARCH_DEFAULTS))
    if unknown:
        raise OptionError(f'search: unknown option(s) {unknown}; known: {sorted(SEARCH_DEFAULTS)}')
    if not search.get('reward_dataset'):
        raise OptionError('search.reward_dataset is required (BasicSR dataset options of the reward-validation '
                          'images, with gt_size)')
    out = {**SEARCH_DEFAULTS, **search}
    if out['reward_mode'] not in ('fresh', 'common'):
        raise OptionError(f"search.reward_mode must be 'fresh' or 'common', got {out['reward_mode']!r}")
    for key in ('baseline_samples', 'signal_probe'):
        value = out[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise OptionError(f'search.{key} must be an integer >= 0, got {value!r}')
    if out['reward_mode'] == 'fresh':
        if 'baseline_samples' not in search:
            out['baseline_samples'] = 0  # the default applies to common patches only
        elif out['baseline_samples']:
            raise OptionError('search.baseline_samples needs search.reward_mode: common (the samples are scored on '
                              "the phase's common patches)")
    alpha = out['alpha']
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha < float('inf'):
        raise OptionError(f'search.alpha must be a number >= 0 (the weight of the cost penalty), got {alpha!r}')
    return out


def check_search_cost(opt: dict, search: dict):
    """``search.penalty`` / ``macs_lr_size`` / ``latency_table``: a known penalty, and a latency table that
    exists and was measured for the supernet's sizes (``deconas_plugin.search_cost``)."""
    net = opt.get('network_g') or {}
    sizes = {k: net.get(k, d) for k, d in (('num_nodes', 4), ('num_blocks', 4), ('num_feat', 64), ('upscale', 2),
                                           ('num_in_ch', 3), ('num_out_ch', 3))}
    try:
        SearchCost(search.get('penalty') or 'params', **sizes, macs_lr_size=search.get('macs_lr_size'),
                   latency_table=search.get('latency_table'))
    except LatencyTableError as e:
        raise OptionError(f'search.latency_table: {e}') from None
    except (ValueError, TypeError) as e:
        raise OptionError(str(e)) from None


def check_autocast(opt: dict):
    """``train.autocast`` is ~/false, bf16 or fp16, and fp16 only where CUDA is used."""
    train = opt.get('train') or {}
    if not isinstance(train, dict) or 'autocast' not in train:
        return
    num_gpu = opt.get('num_gpu', 'auto')
    if num_gpu != 0 and torch.cuda.is_available():
        autocast_dtype(train['autocast'])
    else:
        autocast_dtype(train['autocast'], 'cpu', 'num_gpu: 0' if num_gpu == 0 else
                       f'num_gpu: {num_gpu} but no CUDA GPU is available')


def check_compile(opt: dict):
    """``train.compile`` is ~/auto, a bool or a mapping of torch.compile arguments, and asks for a compiled
    step only in a retrain: the search, which would ignore it, rejects it."""
    train = opt.get('train') or {}
    if isinstance(train, dict) and 'compile' in train:
        settings = compile_settings(train['compile'], 'cpu')
        if settings is not None and opt.get('model_type') == 'DeCoNASSearchModel':
            raise OptionError(f"train.compile = {train['compile']!r}: a search never compiles (it draws a new "
                              'genotype every child step, so the step changes shape); remove the key or set '
                              'it to ~ (train.compile is for a retrain)')


def check_removed_keys(opt: dict):
    """A key this version no longer reads is named, with what replaced it (BasicSR would ignore it)."""
    for dotted, instead in REMOVED_KEYS.items():
        node = opt
        for key in dotted.split('.'):
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            raise OptionError(f'{dotted} is no longer an option; use {instead}')


def check_dist_params(opt: dict):
    """``dist_params``: a mapping; ``timeout`` (seconds any collective may wait for a peer) a number > 0."""
    params = opt.get('dist_params')
    if params is None:
        return
    if not isinstance(params, dict):
        raise OptionError(f'dist_params must be a mapping (backend, port, timeout), got {params!r}')
    if 'timeout' in params:
        value = params['timeout']
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float('inf'):
            raise OptionError(f'dist_params.timeout must be a finite number of seconds > 0 (how long a collective '
                              f'waits for a rank that stopped answering; default {DEFAULT_TIMEOUT_S}), got {value!r}')


def check_options(opt: dict):
    """Raise OptionError for the first mistake found in ``opt`` (a parsed BasicSR option file)."""
    scale = opt.get('scale')
    if scale not in SCALES:
        raise OptionError(f'scale must be 2, 3 or 4, got {scale!r}')
    check_removed_keys(opt)
    check_autocast(opt)
    check_compile(opt)
    check_dist_params(opt)
    for key in [k for k in opt if k.startswith('network_')]:
        if key == 'network_c':
            continue
        check_network(opt, key)
    if opt.get('model_type') == 'DeCoNASSearchModel':
        check_network(opt, 'network_c', controller_options(opt))
        search = search_options(opt)
        reward = search['reward_dataset']
        check_dataset('search.reward_dataset', reward, scale, reward.get('gt_size'))
        check_search_cost(opt, search)
    lmdbs = {}
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        check_dataset(f'datasets.{phase}', dataset_opt, scale, dataset_opt.get('gt_size') if phase == 'train' else None)
        if (dataset_opt.get('io_backend') or {}).get('type') == 'lmdb':
            for key in ('dataroot_gt', 'dataroot_lq'):
                path = osp.abspath(dataset_opt[key])
                if path in lmdbs:
                    raise OptionError(f'datasets.{phase}.{key} and {lmdbs[path]} are the same LMDB {path}: lmdb >= 2 '
                                      f'cannot open one environment twice in a process; validate on a folder copy')
                lmdbs[path] = f'datasets.{phase}.{key}'


def preflight():
    """Check the option file of the command line (``-opt``); on a mistake print it and exit 2."""
    import argparse
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt')
    args, _ = parser.parse_known_args()
    if not args.opt:
        return  # BasicSR's own parser reports the missing -opt
    try:
        check_options(read_option_file(args.opt, OptionError))
    except OptionError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
