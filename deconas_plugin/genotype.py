"""The one architecture type of the project: a DeCoNAS genotype, as plain data.

A genotype describes one densely connected network block (DNB); all N blocks of a network are built
from it. For each node i = 1..M and each possible input j = 0..i-1 there is one K-bit group
(``code``), op 0 first: bit k says whether op k of node i reads ``x_j``. The paper writes each group
as a decimal number with op 0 as the most significant bit, so the paper network is
``"7 6 4 3 0 2 2 3 4 1"`` = bits ``111 110 100 011 000 010 010 011 100 001``.

With feature-fusion search (the paper's FF1 setting) it also holds M local bits (whether
``x_0..x_{M-1}`` enter the block's LFF concat; ``x_M`` always does) and N global bits (whether
``F_0..F_{N-1}`` enter the GFF concat; ``F_N`` always does).

Text forms (``Genotype.parse``):

* decimal: ``"7 6 4 3 0 2 2 3 4 1"``; with FF bits: ``"7 6 4 3 0 2 2 3 4 1 | 1 0 1 1 | 1 1 0 1"``;
* bits (the reference code's form): ``"1 1 1 1 1 0 1 0 0 ..."`` (K*M(M+1)/2 bits), optionally
  followed by the M + N fusion bits (``|`` separators allowed);
* commas instead of spaces, and ``[...]`` brackets, are accepted.

YAML/JSON: a string as above, a list of decimal codes, or a mapping
``{codes: [...], local: [...], global: [...]}`` (``Genotype.to_dict``).
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Optional, Tuple

NUM_OPS = 3  # K
OP_NAMES = ('conv3x3', 'sep_conv3x3', 'dil_conv3x3')


class GenotypeError(ValueError):
    """A genotype that does not fit the search space; the message says what was expected."""


def num_groups(num_nodes: int) -> int:
    """Number of (node, input) groups of a DNB with ``num_nodes`` nodes: M(M+1)/2."""
    return num_nodes * (num_nodes + 1) // 2


def _nodes_for_groups(n: int) -> Optional[int]:
    m = int((math.isqrt(8 * n + 1) - 1) // 2)
    return m if m >= 1 and num_groups(m) == n else None


@dataclass(frozen=True)
class Genotype:
    """One DNB cell (and optionally the fusion choices), as plain data.

    Attributes:
        codes: M(M+1)/2 K-bit codes, ordered node 1 (input 0), node 2 (inputs 0, 1), ...; op 0 is
            the most significant bit.
        num_ops: K, the number of candidate ops (3).
        local_bits: M bits for the LFF inputs x_0..x_{M-1}, or None (all used, FF0).
        global_bits: N bits for the GFF inputs F_0..F_{N-1}, or None (all used, FF0).
    """

    codes: Tuple[int, ...]
    num_ops: int = NUM_OPS
    local_bits: Optional[Tuple[int, ...]] = None
    global_bits: Optional[Tuple[int, ...]] = None

    def __post_init__(self):
        object.__setattr__(self, 'codes', tuple(int(c) for c in self.codes))
        if _nodes_for_groups(len(self.codes)) is None:
            raise GenotypeError(
                f'a genotype needs M(M+1)/2 codes (1, 3, 6, 10, 15, 21, 28, 36, ...), got {len(self.codes)}: '
                f'{list(self.codes)}')
        top = 2**self.num_ops - 1
        bad = [c for c in self.codes if not 0 <= c <= top]
        if bad:
            raise GenotypeError(f'genotype codes must be in 0..{top} (K = {self.num_ops} ops), got {bad}')
        if (self.local_bits is None) != (self.global_bits is None):
            raise GenotypeError('feature-fusion bits come as a pair: give both local (M) and global (N) bits, or neither')
        for name in ('local_bits', 'global_bits'):
            bits = getattr(self, name)
            if bits is None:
                continue
            bits = tuple(int(b) for b in bits)
            if any(b not in (0, 1) for b in bits):
                raise GenotypeError(f'{name} must be 0/1, got {list(bits)}')
            object.__setattr__(self, name, bits)
        if self.local_bits is not None:
            if len(self.local_bits) != self.num_nodes:
                raise GenotypeError(
                    f'local fusion bits: expected M = {self.num_nodes} bits, got {len(self.local_bits)}')
            if len(self.global_bits) < 1:
                raise GenotypeError('global fusion bits: expected N >= 1 bits, got none')

    # ----------------------------------------------------------------------------------- structure
    @property
    def num_nodes(self) -> int:
        """M."""
        return _nodes_for_groups(len(self.codes))

    @property
    def has_fusion_bits(self) -> bool:
        return self.local_bits is not None

    @property
    def num_blocks(self) -> Optional[int]:
        """N as fixed by the global bits, or None without FF bits."""
        return None if self.global_bits is None else len(self.global_bits)

    def code(self, node: int, inp: int) -> int:
        """The K-bit code of node ``node`` (1..M) reading input ``inp`` (0..node-1)."""
        return self.codes[num_groups(node - 1) + inp]

    def op_inputs(self, node: int, op: int) -> Tuple[int, ...]:
        """Indices j of the inputs x_j that op ``op`` (0..K-1) of node ``node`` (1..M) reads."""
        shift = self.num_ops - 1 - op
        return tuple(j for j in range(node) if (self.code(node, j) >> shift) & 1)

    def local_inputs(self) -> Tuple[int, ...]:
        """Indices j of x_0..x_M entering the LFF concat (x_M always does)."""
        m = self.num_nodes
        if self.local_bits is None:
            return tuple(range(m + 1))
        return tuple(j for j in range(m) if self.local_bits[j]) + (m,)

    def live_nodes(self) -> Tuple[int, ...]:
        """The nodes 1..M whose output x_i something reads: the only nodes a network builds and counts.

        x_i is read by the LFF concat (x_M always; x_i, i < M, unless a local fusion bit drops it),
        by an op of a live later node that chooses it, and by node i + 1 when that node is live and
        has no active op (it passes on its predecessor, CA(ReLU(x_i))). Without fusion bits every
        node enters the LFF, so all are live; with them a node can be read by nothing (in
        ``'7 7 0 7 0 7 | 1 0 0 | 1 1'`` node 1 is): its ops and channel attention would never get a
        gradient, so the fixed network, the supernet's ``extract`` and ``count_params`` leave them
        out, and the supernet skips them (docs/networks.md: no layer the forward pass does not use).
        """
        cached = self.__dict__.get('_live_nodes')  # every block's forward asks: computed once
        if cached is None:
            live = set(self.local_inputs())
            # Every reader of x_i is a later node or the LFF, so one pass from node M down settles it.
            for node in range(self.num_nodes, 0, -1):
                if node in live:
                    read = [j for op in range(self.num_ops) for j in self.op_inputs(node, op)]
                    live.update(read or [node - 1])
            cached = tuple(sorted(j for j in live if j >= 1))
            object.__setattr__(self, '_live_nodes', cached)  # not a field: equality and hash ignore it
        return cached

    def global_inputs(self, num_blocks: int) -> Tuple[int, ...]:
        """Indices d of F_0..F_N entering the GFF concat (F_N always does)."""
        if self.global_bits is None:
            return tuple(range(num_blocks + 1))
        self.check(num_blocks=num_blocks)
        return tuple(d for d in range(num_blocks) if self.global_bits[d]) + (num_blocks,)

    def check(self, num_nodes: Optional[int] = None, num_blocks: Optional[int] = None,
              num_ops: Optional[int] = None) -> 'Genotype':
        """Raise a GenotypeError unless this genotype fits a network with these sizes."""
        if num_ops is not None and num_ops != self.num_ops:
            raise GenotypeError(f'genotype has K = {self.num_ops} ops, the network expects {num_ops}')
        if num_nodes is not None and num_nodes != self.num_nodes:
            raise GenotypeError(
                f'genotype {self} describes M = {self.num_nodes} nodes ({len(self.codes)} codes), but the network '
                f'has num_nodes = {num_nodes} (expects {num_groups(num_nodes)} codes)')
        if num_blocks is not None and self.global_bits is not None and len(self.global_bits) != num_blocks:
            raise GenotypeError(
                f'genotype has {len(self.global_bits)} global fusion bits, but the network has num_blocks = '
                f'{num_blocks} (expects N = {num_blocks} bits)')
        return self

    # ---------------------------------------------------------------------------------- conversions
    def bits(self) -> Tuple[int, ...]:
        """The reference code's bit form: K bits per group (op 0 first), then local, then global."""
        out = [(c >> (self.num_ops - 1 - k)) & 1 for c in self.codes for k in range(self.num_ops)]
        if self.has_fusion_bits:
            out += list(self.local_bits) + list(self.global_bits)
        return tuple(out)

    def to_string(self, form: str = 'decimal') -> str:
        """``'decimal'``: ``"7 6 4 ... | l.. | g.."``; ``'bits'``: groups of K bits separated by spaces.

        The decimal form of a genotype whose codes are all 0/1 can read back as another genotype
        (``"0 0 0"`` is also the bit form of one node); such a genotype is written in grouped bits
        (``"000 000 000"``), so that ``Genotype.parse(g.to_string()) == g`` always holds.
        """
        text = self._text(form)
        if form == 'decimal' and not self.has_fusion_bits:
            try:
                same = Genotype.parse(text) == self
            except GenotypeError:
                same = False
            if not same:
                return self._text('bits')
        return text

    def _text(self, form: str) -> str:
        if form == 'decimal':
            parts = [' '.join(map(str, self.codes))]
        elif form == 'bits':
            parts = [' '.join(format(c, f'0{self.num_ops}b') for c in self.codes)]
        else:
            raise ValueError(f"form must be 'decimal' or 'bits', got {form!r}")
        if self.has_fusion_bits:
            parts += [' '.join(map(str, self.local_bits)), ' '.join(map(str, self.global_bits))]
        return ' | '.join(parts)

    def __str__(self) -> str:
        return self.to_string()

    def to_list(self) -> list:
        """Decimal codes, then the fusion bits if any (a flat list of ints).

        A flat list is not always unambiguous (with fusion bits, 0/1 codes and N = M^2 it has the
        length of the bit form): store ``to_dict()`` or ``to_string()``.
        """
        return list(self.codes) + (list(self.local_bits) + list(self.global_bits) if self.has_fusion_bits else [])

    def to_dict(self) -> dict:
        """A YAML/JSON-friendly mapping (``Genotype.parse`` reads it back)."""
        out = {'codes': list(self.codes)}
        if self.has_fusion_bits:
            out['local'] = list(self.local_bits)
            out['global'] = list(self.global_bits)
        return out

    # --------------------------------------------------------------------------------- construction
    @classmethod
    def parse(cls, value, num_nodes: Optional[int] = None, num_blocks: Optional[int] = None,
              num_ops: int = NUM_OPS) -> 'Genotype':
        """Read a genotype from a string, a list of ints, a mapping, or a Genotype.

        ``num_nodes``/``num_blocks`` (M, N), when given, are checked, and they settle whether a
        flat list of 0/1 values is the decimal or the bit form.
        """
        if isinstance(value, Genotype):
            return value.check(num_nodes, num_blocks, num_ops)
        if isinstance(value, dict):
            unknown = set(value) - {'codes', 'local', 'global'}
            if unknown or 'codes' not in value:
                raise GenotypeError(
                    f'a genotype mapping has keys codes (required), local, global; got {sorted(value)}')
            g = cls(tuple(_ints(value['codes'], 'codes')), num_ops,
                    _opt_ints(value.get('local'), 'local'), _opt_ints(value.get('global'), 'global'))
            return g.check(num_nodes, num_blocks)
        if isinstance(value, str):
            segments = [_ints(s, 'genotype') for s in value.strip().strip('[]').split('|')]
        elif isinstance(value, (list, tuple)):
            segments = [_ints(value, 'genotype')]
        else:
            raise GenotypeError(f'a genotype is a string, a list of ints or a mapping, got {type(value).__name__}')
        if len(segments) == 3:
            head, local, glob = segments
            m = len(local)
            codes = _codes_from_head(head, m, num_ops)
            if codes is None:
                raise GenotypeError(
                    f'cannot read {value!r}: {m} local bits mean M = {m}, so the mix-node part needs '
                    f'{num_groups(m)} decimal codes or {num_ops * num_groups(m)} bits, got {len(head)} values')
            return cls(codes, num_ops, tuple(local), tuple(glob)).check(num_nodes, num_blocks)
        if len(segments) != 1:
            raise GenotypeError(
                f'a genotype string has 1 part, or 3 parts "codes | local bits | global bits"; got {len(segments)}: '
                f'{value!r}')
        return cls._from_flat(segments[0], num_nodes, num_blocks, num_ops, value)

    @classmethod
    def _from_flat(cls, vals, num_nodes, num_blocks, num_ops, raw):
        """A flat list: decimal codes or bits, optionally followed by M + N fusion bits."""
        readings, errors = [], []
        for m in ([num_nodes] if num_nodes is not None else range(1, 64)):
            for head_len in (num_groups(m), num_ops * num_groups(m)):
                n = len(vals) - head_len - m  # number of global bits if the tail is fusion bits
                codes = _codes_from_head(vals[:head_len], m, num_ops)
                if codes is None:
                    continue
                is_bits = head_len != num_groups(m)
                try:
                    if head_len == len(vals):
                        readings.append((is_bits, cls(codes, num_ops)))
                    elif n >= 1 and (num_blocks is None or n == num_blocks) and _all_bits(vals[head_len:]):
                        readings.append((is_bits, cls(codes, num_ops, tuple(vals[head_len:head_len + m]),
                                                      tuple(vals[head_len + m:]))))
                except GenotypeError as e:  # right length, wrong values: report that, not the length
                    errors.append(e)
        # Without M and N a list is read as FF-free when it can be (a trailing 0/1 run could often be
        # fusion bits); then a list of 0/1 values only is read as the bit form (the reference code's
        # form) when it can be. A decimal genotype with fusion bits and only 0/1 codes must be written
        # "codes | local | global"; ``to_string`` writes what reads back.
        if num_nodes is None and num_blocks is None:
            readings = [r for r in readings if not r[1].has_fusion_bits] or readings
        readings = [g for b, g in readings if b] or [g for b, g in readings]
        readings = list(dict.fromkeys(readings))
        if len(readings) == 1:
            return readings[0].check(num_nodes, num_blocks)
        if not readings and errors:
            raise errors[0]
        if not readings:
            expected = (f'{num_groups(num_nodes)} decimal codes or {num_ops * num_groups(num_nodes)} bits'
                        if num_nodes is not None else 'M(M+1)/2 decimal codes (1, 3, 6, 10, ...) or '
                        f'{num_ops}*M(M+1)/2 bits (3, 9, 18, 30, ...)')
            m_txt = f'num_nodes M = {num_nodes}' if num_nodes is not None else 'any M'
            raise GenotypeError(
                f'cannot read {raw!r} ({len(vals)} values) as a genotype for {m_txt}: expected {expected}, '
                f'optionally followed by M + N fusion bits (write "codes | local | global" to be explicit)')
        raise GenotypeError(
            f'{raw!r} is ambiguous ({len(readings)} readings: {"; ".join(g._text("decimal") for g in readings)}); '
            f'write it as "codes | local bits | global bits" or pass num_nodes/num_blocks')

    @classmethod
    def random(cls, num_nodes: int, num_blocks: Optional[int] = None, fusion: bool = False,
               rng: Optional[random.Random] = None, density: float = 0.5, num_ops: int = NUM_OPS) -> 'Genotype':
        """A random genotype; each bit is 1 with probability ``density``."""
        rng = rng or random.Random()
        bit = lambda: int(rng.random() < density)  # noqa: E731
        codes = tuple(sum(bit() << k for k in range(num_ops)) for _ in range(num_groups(num_nodes)))
        if not fusion:
            return cls(codes, num_ops)
        if num_blocks is None:
            raise ValueError('random(fusion=True) needs num_blocks')
        return cls(codes, num_ops, tuple(bit() for _ in range(num_nodes)), tuple(bit() for _ in range(num_blocks)))

    @classmethod
    def full(cls, num_nodes: int, num_blocks: Optional[int] = None, fusion: bool = False,
             num_ops: int = NUM_OPS) -> 'Genotype':
        """The largest genotype of the space: every op reads every input (and every fusion bit set)."""
        codes = (2**num_ops - 1,) * num_groups(num_nodes)
        if not fusion:
            return cls(codes, num_ops)
        return cls(codes, num_ops, (1,) * num_nodes, (1,) * num_blocks)


def _all_bits(vals) -> bool:
    return all(v in (0, 1) for v in vals)


def _codes_from_head(head, m: int, num_ops: int) -> Optional[Tuple[int, ...]]:
    """The M(M+1)/2 codes of a mix-node part given as decimal codes or as bits, or None if neither."""
    g = num_groups(m)
    if len(head) == g:
        return tuple(head)
    if len(head) == num_ops * g and _all_bits(head):
        return tuple(int(''.join(map(str, head[i:i + num_ops])), 2) for i in range(0, len(head), num_ops))
    return None


def _ints(value, what) -> list:
    if isinstance(value, str):
        tokens = []
        for t in re.split(r'[\s,\[\]]+', value):
            # A multi-digit run of 0/1 is a K-bit group written without spaces ("111 110 ..."):
            # decimal codes are single digits (0..2^K-1 <= 7), so this cannot be misread.
            tokens += list(t) if len(t) > 1 and set(t) <= {'0', '1'} else [t] if t else []
    else:
        try:
            tokens = list(value)
        except TypeError:  # e.g. a mapping {codes: 7}: not a list
            raise GenotypeError(f'{what}: expected a string or a list of ints, got {value!r}') from None
    out = []
    for t in tokens:
        try:
            if isinstance(t, bool) or (isinstance(t, float) and not t.is_integer()):
                raise ValueError
            out.append(int(t))
        except (TypeError, ValueError):
            raise GenotypeError(f'{what}: {t!r} is not an integer (in {value!r})') from None
    if not out:
        raise GenotypeError(f'{what}: empty genotype {value!r}')
    return out


def _opt_ints(value, what):
    return None if value is None else tuple(_ints(value, what))


PAPER_GENOTYPE = Genotype((7, 6, 4, 3, 0, 2, 2, 3, 4, 1))
"""The network found in the paper (x2, N = 4, M = 4)."""
