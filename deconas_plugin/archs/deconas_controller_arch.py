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

    def _op_heads(self):
        """The op heads of all M(M+1)/2 steps stacked: weights (n, K, hidden), biases (n, K)."""
        n = num_groups(self.num_nodes)
        weight = torch.stack([h.weight for h in self.op_heads])
        bias = torch.stack([h.bias for h in self.op_heads])
        if len(self.op_heads) == 1:  # shared heads
            weight, bias = weight.expand(n, -1, -1), bias.expand(n, -1)
        return weight, bias

    def _codes(self, op_bits: torch.Tensor) -> torch.Tensor:
        """Integer codes (...) of K-bit groups (..., K), op 0 the most significant bit."""
        return (op_bits.long() * self._bit_weights).sum(-1)

    def _unsquash(self, values: torch.Tensor) -> torch.Tensor:
        """The raw logits l with ``_squash(l) == values`` (+-inf beyond the squashed range)."""
        if self.tanh_constant is not None:
            values = torch.atanh((values / self.tanh_constant).clamp(-1, 1))
        if self.temperature is not None:
            values = values * self.temperature
        return values

    @torch.no_grad()
    def decide(self, batch_size: int, mode: str) -> torch.Tensor:
        """Decisions (B, num_decisions) drawn step by step (``mode`` 'sample' or 'greedy').

        The step loop is the only sequential part of the controller, so it is kept to a few
        tensor ops per step (a CPU spends its time dispatching them, not computing): the LSTM's
        own weights run through ``torch.lstm_cell``, the heads are stacked once, and a bit is
        drawn by comparing its raw logit with a threshold computed up front for all steps: the
        logit of a uniform number (``u < sigmoid(squash(l))``, i.e. Bernoulli), mapped back
        through the squashing (which is increasing), or 0 for greedy decisions.
        """
        if mode not in ('sample', 'greedy'):
            raise ValueError(f"mode must be 'sample' or 'greedy', got {mode!r}")
        layers = [[getattr(self.lstm, f'{w}_l{k}') for w in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh')]
                  for k in range(self.lstm.num_layers)]
        n = num_groups(self.num_nodes)
        if mode == 'greedy':
            threshold = self.start.new_zeros(batch_size, self.num_decisions)
        else:
            threshold = self._unsquash(torch.logit(torch.rand(batch_size, self.num_decisions,
                                                              device=self.start.device)))
        inp = self.start[0].expand(batch_size, -1)
        state = [(inp.new_zeros(inp.shape), inp.new_zeros(inp.shape)) for _ in layers]
        weight, bias = self._op_heads()
        steps = [(weight[t], bias[t]) for t in range(n)]
        if self.feature_fusion_search:
            steps += [(self.local_heads.weight, self.local_heads.bias),
                      (self.global_heads.weight, self.global_heads.bias)]
        embedding, bit_weights = self.code_embedding.weight, self._bit_weights  # (no Module lookups in the loop)
        chosen, col = [], 0
        for t, (w, b) in enumerate(steps):
            h = inp
            for layer, weights in enumerate(layers):
                state[layer] = torch.lstm_cell(h, state[layer], *weights)
                h = state[layer][0]
            width = w.shape[0]
            bits = torch.addmm(b, h, w.t()) > threshold[:, col:col + width]
            col += width
            chosen.append(bits)
            if t < n:  # an op step's code is the next step's input...
                inp = embedding[(bits * bit_weights).sum(1)]
            elif t == n:  # ...and the local fusion bits the global step's
                inp = self.local_embedding(bits.float())
        return torch.cat(chosen, 1).float()

    def score(self, bits: torch.Tensor):
        """(log_prob (B,), entropy (B,)) of given decisions (B, num_decisions); differentiable."""
        return self.score_logits(self.logits(bits), bits)

    @staticmethod
    def score_logits(logits: torch.Tensor, bits: torch.Tensor):
        """(log_prob (B,), entropy (B,)) of decisions ``bits`` from their ``logits`` (see ``logits``);
        ``sigmoid(logits)`` is the probability of a 1 at each decision."""
        log_prob = -F.binary_cross_entropy_with_logits(logits, bits, reduction='none').sum(1)
        entropy = F.binary_cross_entropy_with_logits(logits, torch.sigmoid(logits), reduction='none').sum(1)
        return log_prob, entropy

    def logits(self, bits: torch.Tensor) -> torch.Tensor:
        """Squashed logits (B, num_decisions) of every decision, given the decisions ``bits`` before it.

        No sequential loop: every step's input follows from the bits, so one ``nn.LSTM`` call
        runs the whole sequence and the per-step heads run as one batched matmul.
        """
        n, k = num_groups(self.num_nodes), self.num_ops
        batch, hidden = bits.shape[0], self.start.shape[-1]
        op_bits = bits[:, :n * k].reshape(batch, n, k).transpose(0, 1)  # (n, B, K)
        inputs = [self.start.expand(1, batch, hidden), self.code_embedding(self._codes(op_bits[:n - 1]))]
        if self.feature_fusion_search:
            local = bits[:, n * k:n * k + self.num_nodes]
            inputs += [self.code_embedding(self._codes(op_bits[n - 1:])), self.local_embedding(local)[None]]
        out, _ = self.lstm(torch.cat(inputs, 0))  # (steps, B, hidden)
        weight, bias = self._op_heads()
        logits = [self._squash(torch.baddbmm(bias[:, None], out[:n], weight.transpose(1, 2))).transpose(0, 1)
                  .reshape(batch, n * k)]
        if self.feature_fusion_search:
            logits += [self._squash(self.local_heads(out[n])), self._squash(self.global_heads(out[n + 1]))]
        return torch.cat(logits, 1)  # (B, num_decisions), in the order of the bits

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
        """The per-step argmax: each bit set iff its probability, given the greedy bits before it,
        exceeds 1/2 (one unroll, deterministic).

        Not necessarily the most likely genotype: an early greedy bit can lower the later steps'
        probabilities by more than it gains (``tests/test_controller.py`` finds such controllers by
        brute force over M = 2). The search uses it only to pick a genotype to validate.
        """
        return self.bits_to_genotype(self.decide(1, 'greedy')[0])

    def forward(self, batch_size: int = 1):
        return self.run(batch_size)
