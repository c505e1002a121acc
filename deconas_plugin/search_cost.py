"""The cost a search penalises (``search.penalty``): parameters (the paper), MACs, or latency on a device.

The reward is ``R = PSNR-Y - alpha * cost / cost_max`` with ``cost_max`` the cost of the largest
genotype of the space (every op reads every input, all fusion inputs), whatever the unit:

* ``params``: exact parameter count (``complexity.count_params``), the paper's penalty and the default;
* ``macs``: exact multiply-accumulates of one forward pass on an LR input of ``macs_lr_size``
  (``complexity.count_macs``; default the LR of a 1280x720 output, as the complexity tables);
* ``latency``: milliseconds predicted by a latency table measured on the target device
  (``search.latency_table``, written by ``tools/latency_table.py``; ``latency.predict``).
"""
from typing import Optional, Sequence

from .complexity import count_macs, count_params
from .genotype import Genotype
from .latency import load_table, predict

PENALTIES = {'params': 'params', 'macs': 'MACs', 'latency': 'ms'}  # penalty -> unit of its cost


class SearchCost:
    """``cost(genotype)`` in the unit of ``penalty``, and ``cost_max`` (the largest genotype's cost).

    Args:
        penalty: 'params', 'macs' or 'latency'.
        num_nodes, num_blocks, num_feat, upscale, num_in_ch, num_out_ch: the space's network sizes.
        macs_lr_size: (h, w) of the LR input the MACs are counted on (None: the LR of 1280x720).
        latency_table: path of a table from ``tools/latency_table.py`` (required for 'latency'; it
            must have been measured for these sizes).
    """

    def __init__(self, penalty: str = 'params', *, num_nodes: int, num_blocks: int, num_feat: int, upscale: int,
                 num_in_ch: int = 3, num_out_ch: int = 3, macs_lr_size: Optional[Sequence[int]] = None,
                 latency_table: Optional[str] = None):
        if penalty not in PENALTIES:
            raise ValueError(f'search.penalty must be one of {sorted(PENALTIES)}, got {penalty!r}')
        if penalty == 'latency' and not latency_table:
            raise ValueError('search.penalty: latency needs search.latency_table (a table measured on the target '
                             'device: python tools/latency_table.py --device cpu|cuda --out lut.json)')
        if macs_lr_size is not None:
            macs_lr_size = tuple(macs_lr_size)
            if len(macs_lr_size) != 2 or not all(isinstance(v, int) and v > 0 for v in macs_lr_size):
                raise ValueError(f'search.macs_lr_size must be [h, w] (positive integers), got {list(macs_lr_size)}')
        self.penalty, self.unit = penalty, PENALTIES[penalty]
        self.num_blocks = num_blocks
        self.size = dict(num_blocks=num_blocks, num_feat=num_feat, upscale=upscale, num_in_ch=num_in_ch,
                         num_out_ch=num_out_ch)
        self.macs_lr_size = macs_lr_size
        self.table = None
        if penalty == 'latency':
            self.table = load_table(latency_table, num_nodes=num_nodes, **self.size)
        self.cost_max = self(Genotype.full(num_nodes))

    def __call__(self, genotype: Genotype):
        if self.penalty == 'params':
            return count_params(genotype, **self.size)
        if self.penalty == 'macs':
            return count_macs(genotype, **self.size, lr_size=self.macs_lr_size)
        return predict(self.table, genotype)

    def format(self, cost) -> str:
        """``cost`` for a table: '1,693,251 params', '382.90 GMACs', '12.31 ms'."""
        if self.penalty == 'params':
            return f'{cost:,} params'
        if self.penalty == 'macs':
            return f'{cost / 1e9:.2f} GMACs'
        return f'{cost:.2f} ms'


def search_cost(search_opt: dict, supernet) -> SearchCost:
    """The ``SearchCost`` of a search section (``penalty``, ``macs_lr_size``, ``latency_table``) for a
    supernet (its ``size()`` and ``num_nodes``)."""
    return SearchCost(search_opt.get('penalty') or 'params', num_nodes=supernet.num_nodes, **supernet.size(),
                      macs_lr_size=search_opt.get('macs_lr_size'), latency_table=search_opt.get('latency_table'))
