"""What the models read from an option file, with its defaults and checks.

The ``search`` section (``SEARCH_DEFAULTS``), ``network_c`` (``controller_options``), ``train.autocast``
(``autocast_dtype``) and ``train.compile`` (``compile_settings``): plain functions of the option dict.
The models (``models/``) and the pre-flight check (``utils/option_check.py``) both read them from
here, so that the check does not import the models.
"""
import torch

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
    # The reward the controller learns from (README "Does the search search?": measured on the demo's space)
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
        raise ValueError(f"a DeCoNAS search needs network_g type DeCoNetSupernet, got {net_g.get('type')!r}")
    net_c = dict(opt.get('network_c') or {})
    net_c.setdefault('type', 'DeCoNASController')
    for key, default in (('num_nodes', 4), ('num_blocks', 4), ('feature_fusion_search', False)):
        net_c.setdefault(key, net_g.get(key, default))
        if net_c[key] != net_g.get(key, default):
            raise ValueError(f'network_c.{key} = {net_c[key]} differs from network_g.{key} = {net_g.get(key, default)}')
    return net_c


AUTOCAST_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
AUTOCAST_VALUES = '~ (or false: fp32, the default), bf16 or fp16'


def autocast_dtype(value):
    """The dtype of ``train.autocast``: None for ``~``/false (fp32), bfloat16 for bf16, float16 for fp16."""
    if value is None or value is False:
        return None
    if isinstance(value, str) and value in AUTOCAST_DTYPES:
        return AUTOCAST_DTYPES[value]
    raise ValueError(f'train.autocast must be {AUTOCAST_VALUES}, got {value!r}')


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
            raise ValueError(f'train.compile: unknown torch.compile argument(s) {unknown}; known: {list(COMPILE_KEYS)}')
        return dict(value)
    raise ValueError(f'train.compile must be {COMPILE_VALUES}, got {value!r}')
