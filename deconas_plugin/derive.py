"""Derivation: from a search experiment to one genotype and a ready-to-run retrain option file.

Used by ``tools/derive.py`` (and the demo): load the supernet and controller of a search
checkpoint, sample genotypes, score each with the shared weights on a validation set, rank them,
choose one, and write a DeCoNASNet retrain option file.
"""
import copy
import csv
import io
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import yaml
from basicsr.archs import build_network
from basicsr.data import build_dataset
from basicsr.utils.options import ordered_yaml
from tqdm import tqdm

from .complexity import count_params
from .genotype import Genotype, GenotypeError
from . import reward
from .options import SEARCH_DEFAULTS, controller_options
from .search_cost import SearchCost
from .search_signal import score_table
from .utils.checkpoint import load_state
from .utils.markdown_table import md_table
from .utils.option_file import read_option_file

PROJECT_ROOT = osp.abspath(osp.join(osp.dirname(__file__), osp.pardir))


class DeriveError(Exception):
    """A user error of the derivation (missing experiment, checkpoint, dataset...)."""


def read_options(path: str) -> dict:
    return read_option_file(path, DeriveError)


def network_sizes(search_opt: dict) -> dict:
    """N, M, C, scale and channels of the networks a search trains for: its supernet's, with the supernet's
    defaults (every DeCoNASNet derived, retrained or reported for the search gets these)."""
    net = search_opt['network_g']
    return {'num_blocks': net.get('num_blocks', 4), 'num_nodes': net.get('num_nodes', 4),
            'num_feat': net.get('num_feat', 64), 'upscale': net.get('upscale', search_opt['scale']),
            'num_in_ch': net.get('num_in_ch', 3), 'num_out_ch': net.get('num_out_ch', 3)}


def genotype_params(genotype: Genotype, sizes: dict) -> int:
    """Exact parameters of ``genotype``'s DeCoNASNet with ``sizes`` (``network_sizes``)."""
    return count_params(genotype, **{k: v for k, v in sizes.items() if k != 'num_nodes'})


def read_chosen(derive_dir: str, sizes: dict, error: type = DeriveError) -> dict:
    """``<derive_dir>/chosen.json`` (what ``tools/derive.py`` chose) with its genotype parsed for the network
    ``sizes`` (key ``parsed``); a missing or unreadable file, or a genotype that does not fit, raises ``error``
    (the caller's user error)."""
    path = osp.join(derive_dir, 'chosen.json')
    if not osp.isfile(path):
        raise error(f'no derived genotype: {path} is missing; run python tools/derive.py -opt <search yml> first '
                    f'(the demo does)')
    try:
        with open(path) as f:
            chosen = json.load(f)
        value = chosen.get('genotype_dict') or chosen['genotype']
    except (ValueError, KeyError, AttributeError) as e:
        raise error(f'{path} is not a chosen.json written by tools/derive.py (no genotype: {e})') from None
    try:
        chosen['parsed'] = Genotype.parse(value, num_nodes=sizes['num_nodes'], num_blocks=sizes['num_blocks'])
    except GenotypeError as e:
        raise error(f'the genotype of {path} does not fit the search network: {e}') from None
    return chosen


def checkpoint_path(models_dir: str, label: str, iteration: str) -> str:
    """``<models_dir>/<label>_<iteration>.pth``; for ``latest``, the latest file or else the highest
    iteration's. A missing checkpoint is a ``DeriveError``."""
    if iteration != 'latest':
        path = osp.join(models_dir, f'{label}_{iteration}.pth')
    else:
        path = osp.join(models_dir, f'{label}_latest.pth')
        if not osp.isfile(path):
            iters = [int(n[len(label) + 1:-4]) for n in os.listdir(models_dir) if n.startswith(label + '_')
                     and n[len(label) + 1:-4].isdigit()] if osp.isdir(models_dir) else []
            path = osp.join(models_dir, f'{label}_{max(iters)}.pth') if iters else path
    if not osp.isfile(path):
        raise DeriveError(f'no {label} checkpoint {osp.basename(path)} in {models_dir}: run the search first '
                          f'(python deconas_plugin/train.py -opt <search yml>) or pass --experiment/--iter')
    return path


def load_search(opt: dict, experiment: Optional[str] = None, iteration: str = 'latest', device='cpu'):
    """(supernet, controller) of a search experiment, with the weights of ``iteration``."""
    experiment = experiment or osp.join(PROJECT_ROOT, 'experiments', opt['name'])
    models_dir = osp.join(experiment, 'models')
    supernet = build_network(copy.deepcopy(opt['network_g']))
    controller = build_network(controller_options(opt))
    for net, label in ((supernet, 'net_g'), (controller, 'net_c')):
        path = checkpoint_path(models_dir, label, iteration)
        state = load_state(path)
        try:
            net.load_state_dict(state.get('params', state))
        except RuntimeError as e:
            raise DeriveError(f'{path} does not fit network_{label[4:]} of the option file (different N, M, C, '
                              f'scale or controller settings?): {" ".join(str(e).split())[:300]}') from None
    return supernet.to(device).eval(), controller.to(device).eval()


def validation_batches(opt: dict, which: str = 'val', device='cpu') -> List:
    """(lq, gt) pairs of the search's validation set: whole images of ``datasets.val``, or the
    reward-validation patches (``which='reward'``, one fixed batch per image)."""
    if which == 'val':
        dataset_opt = next((v for k, v in (opt.get('datasets') or {}).items() if k.startswith('val')), None)
        if dataset_opt is None:
            raise DeriveError('the search option file has no datasets.val; use --scored-on reward')
        dataset_opt = dict(dataset_opt, phase='val', scale=opt['scale'])
        for key in ('dataroot_gt', 'dataroot_lq'):
            path = dataset_opt.get(key)
            if path and not osp.isabs(path):
                dataset_opt[key] = osp.join(PROJECT_ROOT, path)
            if path and not osp.exists(dataset_opt[key]):
                raise DeriveError(f'{key} of the val dataset does not exist: {dataset_opt[key]}')
        dataset = build_dataset(dataset_opt)
    else:
        dataset = reward.reward_dataset(opt, 'val', PROJECT_ROOT, DeriveError)
    return [(d['lq'][None].to(device), d['gt'][None].to(device)) for d in (dataset[i] for i in range(len(dataset)))]


def score(supernet, genotypes: Sequence[Genotype], batches, crop_border: int, alpha: float,
          progress: bool = True, cost: Optional[SearchCost] = None) -> List[Dict]:
    """PSNR-Y with the shared weights, exact params, cost and reward of each distinct genotype.

    ``cost``: the search's penalty (``search_cost.search_cost``); default the paper's, params.
    Reward: ``reward.penalized_reward``, as the search computed it.
    """
    size = supernet.size()
    cost = cost or SearchCost('params', num_nodes=supernet.num_nodes, **size)
    distinct = list(dict.fromkeys(genotypes))
    with tqdm(total=len(distinct), desc='scoring genotypes', unit='genotype', disable=not progress) as bar:
        table = score_table(supernet, distinct, batches, crop_border, progress=lambda *_: bar.update())
    rows = []
    for g, batch_psnr in zip(distinct, table.tolist()):
        psnr = sum(batch_psnr) / len(batches)
        params, c = count_params(g, **size), cost(g)
        rows.append({'genotype': g.to_string(), 'bits': g.to_string('bits'), 'params': params, 'psnr': psnr,
                     'cost': c, 'cost_unit': cost.unit,
                     'reward': reward.penalized_reward(psnr, c, alpha, cost.cost_max)})
    rows.sort(key=lambda r: r['reward'], reverse=True)
    for rank, row in enumerate(rows, 1):
        row['rank'] = rank
    return rows


def choose(rows: List[Dict], max_params: Optional[int] = None) -> Dict:
    """Best reward, or with ``max_params`` the best PSNR among genotypes within that budget."""
    if max_params is None:
        return max(rows, key=lambda r: r['reward'])
    within = [r for r in rows if r['params'] <= max_params]
    if not within:
        raise DeriveError(f'no sampled genotype has at most {max_params:,} params '
                          f'(smallest: {min(r["params"] for r in rows):,}); raise --max-params or sample more')
    return max(within, key=lambda r: r['psnr'])


def ranking_tables(rows: List[Dict]) -> Dict[str, str]:
    """The ranking as CSV and Markdown text; with a MACs or latency penalty a column shows that cost."""
    unit = rows[0].get('cost_unit', 'params') if rows else 'params'
    fields = ['rank', 'genotype', 'bits', 'params', 'psnr', 'reward'] + (['cost', 'cost_unit'] if unit != 'params'
                                                                          else [])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows({k: r[k] for k in fields} for r in rows)
    column, cost = {'MACs': (['GMACs'], lambda r: [f"{r['cost'] / 1e9:.3f}"]),
                    'ms': (['latency (ms)'], lambda r: [f"{r['cost']:.3f}"])}.get(unit, ([], lambda r: []))
    md = md_table(['rank', 'genotype', 'params', *column, 'PSNR-Y (dB)', 'reward'], 'rlr' + 'r' * len(column) + 'rr',
                  [[r['rank'], f"`{r['genotype']}`", f"{r['params']:,}", *cost(r), f"{r['psnr']:.3f}",
                    f"{r['reward']:.3f}"] for r in rows])
    return {'csv': buf.getvalue(), 'md': '\n'.join(md) + '\n'}


def set_option(opt: dict, dotted: str, value):
    """``set_option(opt, 'train.total_iter', 100)``: set a nested key, creating mappings as needed."""
    keys = dotted.split('.')
    node = opt
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise DeriveError(f'--set {dotted}: {key} is not a mapping in the option file')
    node[keys[-1]] = value


def training_options(network_g: dict, search_opt: dict, template: dict, name: str, data_from_search: bool = False,
                     pretrain: Optional[str] = None, overrides: Sequence[str] = ()) -> dict:
    """A training option file for ``network_g`` with the budget of ``template`` and the scale (and, with
    ``data_from_search``, the datasets) of a search; ``overrides`` (``key=value``) are applied last. Every
    network trained for a search (the found one, a baseline beside it) gets its schedule from here."""
    opt = copy.deepcopy(template)
    opt['name'] = name
    opt['model_type'] = 'DeCoNASSRModel'
    opt['scale'] = search_opt['scale']
    opt['network_g'] = copy.deepcopy(network_g)
    if data_from_search:
        opt['datasets'] = copy.deepcopy(search_opt['datasets'])
    opt.setdefault('path', {})['pretrain_network_g'] = pretrain
    for item in overrides:
        if '=' not in item:
            raise DeriveError(f'--set expects key=value (e.g. train.total_iter=1000), got {item!r}')
        key, value = item.split('=', 1)
        set_option(opt, key, yaml.safe_load(value))
    return opt


def retrain_options(genotype: Genotype, search_opt: dict, template: dict, data_from_search: bool = False,
                    pretrain: Optional[str] = None, overrides: Sequence[str] = ()) -> dict:
    """A DeCoNASNet training option file for ``genotype`` (the network sizes of the search)."""
    network_g = {'type': 'DeCoNASNet', 'genotype': genotype.to_string(), **network_sizes(search_opt)}
    return training_options(network_g, search_opt, template, f"DeCoNASNet_x{search_opt['scale']}_{search_opt['name']}",
                            data_from_search, pretrain, overrides)


def test_options(train_opt: dict, template: dict) -> dict:
    """The test option file of the network ``train_opt`` trains: ``template``'s test sets and metrics (a
    template of the same scale: ``options/test/test_DeCoNASNet_x<s>.yml``), that network (genotype, N, M, C,
    scale) and the checkpoint the retrain writes last
    (``experiments/<name>/models/net_g_latest.pth``; its EMA weights when the retrain keeps them)."""
    opt = copy.deepcopy(template)
    opt['name'] = f"test_{train_opt['name']}"
    opt['model_type'] = train_opt.get('model_type', opt.get('model_type'))
    opt['scale'] = train_opt['scale']
    opt['network_g'] = copy.deepcopy(train_opt['network_g'])
    path = opt.setdefault('path', {})
    path['pretrain_network_g'] = osp.join(PROJECT_ROOT, 'experiments', train_opt['name'], 'models', 'net_g_latest.pth')
    path['param_key_g'] = weights_key(train_opt)
    path['strict_load_g'] = True
    return opt


def weights_key(train_opt: dict) -> str:
    """The checkpoint entry a test of ``train_opt``'s network loads: ``params_ema`` when the training keeps
    an EMA of its weights (``train.ema_decay`` > 0; BasicSR saves both), else ``params``."""
    return 'params_ema' if float((train_opt.get('train') or {}).get('ema_decay') or 0) > 0 else 'params'


def dump_options(opt: dict) -> str:
    return yaml.dump(plain(opt), Dumper=ordered_yaml()[1], sort_keys=False, default_flow_style=False)


def plain(value):
    """OrderedDicts -> dicts, recursively (for dumping and comparing option files)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def search_alpha(opt: dict) -> float:
    return float((opt.get('search') or {}).get('alpha', SEARCH_DEFAULTS['alpha']))
