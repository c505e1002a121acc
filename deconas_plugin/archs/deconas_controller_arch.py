from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from ..genotype import NUM_OPS, Genotype, num_groups


@ARCH_REGISTRY.register()
class DeCoNASController(nn.Module):
    """The DeCoNAS search strategy: a two-layer LSTM policy over genotypes (ENAS-style).

    One LSTM step per (node, input) group, M(M+1)/2 steps; at each step K binary heads (one linear
    layer per op) each sample one bit, and the sampled K-bit code, looked up
    in a separate embedding table with 2^K rows (as in the reference code, not tied to the heads),
    is the next step's input. With feature-fusion search two more steps follow: one with M binary
    heads (local fusion bits), one with N heads (global fusion bits); the local bits enter the
    global step through a linear embedding of the bit vector (the reference code looked up the
    wrong table there).

    Logits are ``tanh_constant * tanh(logits / temperature)`` (ENAS), each part optional.

    Args:
        num_nodes: M. num_blocks: N (used with feature_fusion_search). num_ops: K.
        feature_fusion_search: also sample the M + N fusion bits.
        hidden_size: LSTM units (64). num_layers: stacked LSTM layers (2).
        temperature: divides the logits (None: off). tanh_constant: squashes them (None: off).
        shared_heads: one set of K heads for all (node, input) steps, as in the reference code, or
            (default) K heads per step, as the paper's text says ("K fully connected layers are
            connected to each LSTM block", Fig. 3a). Measured in ``tests/test_controller.py``:
            with shared heads REINFORCE settles on a policy that repeats a code once the LSTM
            state stops changing (16 of 18 target bits after 800 steps, lr 3e-3); per-step heads
            reach all 18 within 50 steps.
    """

    def __init__(self, num_nodes: int = 4, num_blocks: int = 4, num_ops: int = NUM_OPS,
                 feature_fusion_search: bool = False, hidden_size: int = 64, num_layers: int = 2,
                 temperature: Optional[float] = None, tanh_constant: Optional[float] = 2.5,
                 shared_heads: bool = False):
        super().__init__()
        self.num_nodes, self.num_blocks, self.num_ops = num_nodes, num_blocks, num_ops
        self.feature_fusion_search = feature_fusion_search
        self.temperature, self.tanh_constant = temperature, tanh_constant
        self.start = nn.Parameter(torch.empty(1, 1, hidden_size).uniform_(-0.1, 0.1))
        self.lstm = nn.LSTM(hidden_size, hidden_size, num_layers)
        # K binary heads, shared by all (node, input) steps (reference) or one set per step.
        self.op_heads = nn.ModuleList(
            nn.Linear(hidden_size, num_ops) for _ in range(1 if shared_heads else num_groups(num_nodes)))
        self.code_embedding = nn.Embedding(2**num_ops, hidden_size)
        if feature_fusion_search:
            self.local_heads = nn.Linear(hidden_size, num_nodes)
            self.local_embedding = nn.Linear(num_nodes, hidden_size, bias=False)
            self.global_heads = nn.Linear(hidden_size, num_blocks)
        for p in self.parameters():
            if p is not self.start:
                nn.init.uniform_(p, -0.1, 0.1)
        self.register_buffer('_bit_weights', 2**torch.arange(num_ops - 1, -1, -1), persistent=False)

    @property
    def num_decisions(self) -> int:
        """Number of binary decisions of one genotype."""
        return self.num_ops * num_groups(self.num_nodes) + (
            self.num_nodes + self.num_blocks if self.feature_fusion_search else 0)

    def _squash(self, logits: torch.Tensor) -> torch.Tensor:
        if self.temperature is not None:
            logits = logits / self.temperature
        if self.tanh_constant is not None:
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    def _steps(self):
        """(head, width) of every step: one per (node, input) group, then the two fusion steps."""
        n = num_groups(self.num_nodes)
        steps = [(self.op_heads[t % len(self.op_heads)], self.num_ops) for t in range(n)]
        if self.feature_fusion_search:
            steps += [(self.local_heads, self.num_nodes), (self.global_heads, self.num_blocks)]
        return steps

    def _next_input(self, t: int, bits: torch.Tensor) -> torch.Tensor:
        """Input of step t + 1 given the bits (B, width) decided at step t: (B, hidden)."""
        if t < num_groups(self.num_nodes):
            return self.code_embedding((bits.long() * self._bit_weights).sum(1))
        return self.local_embedding(bits)  # the local fusion step; its successor is the global one

    @torch.no_grad()
    def decide(self, batch_size: int, mode: str) -> torch.Tensor:
        """Decisions (B, num_decisions) drawn step by step (``mode`` 'sample' or 'greedy').

        Runs the LSTM's own weights through ``torch.lstm_cell`` one step at a time: a per-step
        ``nn.LSTM`` call costs several times more (benchmark section 3).
        """
        layers = [[getattr(self.lstm, f'{w}_l{k}') for w in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh')]
                  for k in range(self.lstm.num_layers)]
        inp = self.start[0].expand(batch_size, -1)
        state = [(inp.new_zeros(inp.shape), inp.new_zeros(inp.shape)) for _ in layers]
        steps, chosen = self._steps(), []
        for t, (head, _) in enumerate(steps):
            h = inp
            for k, weights in enumerate(layers):
                state[k] = torch.lstm_cell(h, state[k], *weights)
                h = state[k][0]
            logits = self._squash(head(h))
            bits = (logits > 0).float() if mode == 'greedy' else torch.bernoulli(torch.sigmoid(logits))
            chosen.append(bits)
            if t < len(steps) - 1:
                inp = self._next_input(t, bits)
        return torch.cat(chosen, 1)

    def score(self, bits: torch.Tensor):
        """(log_prob (B,), entropy (B,)) of given decisions (B, num_decisions); differentiable.

        Every step's input follows from the bits, so one ``nn.LSTM`` call runs the whole sequence.
        """
        steps = self._steps()
        widths = [w for _, w in steps]
        parts = torch.split(bits, widths, dim=1)
        inputs = [self.start.expand(1, bits.shape[0], -1)]
        inputs += [self._next_input(t, parts[t])[None] for t in range(len(steps) - 1)]
        out, _ = self.lstm(torch.cat(inputs, 0))  # (steps, B, hidden)
        log_prob, entropy = 0., 0.
        for t, (head, _) in enumerate(steps):
            logits = self._squash(head(out[t]))
            log_prob = log_prob - F.binary_cross_entropy_with_logits(logits, parts[t], reduction='none').sum(1)
            entropy = entropy + F.binary_cross_entropy_with_logits(logits, torch.sigmoid(logits),
                                                                   reduction='none').sum(1)
        return log_prob, entropy

    def run(self, batch_size: int = 1, bits: Optional[torch.Tensor] = None, mode: str = 'sample'):
        """Decide (``mode`` 'sample' or 'greedy') or take the given ``bits`` (B, num_decisions), then score.

        Returns (bits (B, num_decisions), log_prob (B,), entropy (B,)); log_prob and entropy are
        differentiable.
        """
        if bits is None:
            bits = self.decide(batch_size, mode)
        else:
            bits = bits.to(device=self.start.device, dtype=torch.float32)
        log_prob, entropy = self.score(bits)
        return bits, log_prob, entropy

    def bits_to_genotype(self, bits: torch.Tensor) -> Genotype:
        return Genotype.parse([int(v) for v in bits.tolist()], num_nodes=self.num_nodes,
                              num_blocks=self.num_blocks if self.feature_fusion_search else None)

    def genotype_to_bits(self, genotype: Genotype) -> torch.Tensor:
        genotype = Genotype.parse(genotype, num_nodes=self.num_nodes)
        if genotype.has_fusion_bits != self.feature_fusion_search:
            raise ValueError(f'controller feature_fusion_search={self.feature_fusion_search} cannot score {genotype}')
        return torch.tensor(genotype.bits(), dtype=torch.float32)

    def sample(self) -> Tuple[Genotype, torch.Tensor, torch.Tensor]:
        """One genotype drawn from the policy, with its summed log-probability and entropy (scalars)."""
        bits, log_prob, entropy = self.run(1)
        return self.bits_to_genotype(bits[0]), log_prob[0], entropy[0]

    def sample_many(self, n: int) -> Tuple[List[Genotype], torch.Tensor, torch.Tensor]:
        """``n`` genotypes drawn in one batched unroll, with (n,) log-probs and entropies."""
        bits, log_prob, entropy = self.run(n)
        return [self.bits_to_genotype(b) for b in bits], log_prob, entropy

    def log_prob(self, genotype) -> torch.Tensor:
        """Log-probability of a given genotype under the policy (differentiable)."""
        return self.run(bits=self.genotype_to_bits(genotype)[None])[1][0]

    def greedy(self) -> Genotype:
        """The most likely decision at every step (each bit set iff its probability exceeds 1/2)."""
        return self.bits_to_genotype(self.decide(1, 'greedy')[0])

    def forward(self, batch_size: int = 1):
        return self.run(batch_size)
