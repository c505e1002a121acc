import math

import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn


@LOSS_REGISTRY.register()
class REINFORCELoss(nn.Module):
    """REINFORCE with an exponential-moving-average baseline and an entropy bonus (ENAS).

    ``R' = R + entropy_weight * entropy`` (the bonus enters the reward, as in ENAS);
    ``b <- b - (1 - baseline_decay) * (b - R')``; loss ``= -log_prob * (R' - b)``.

    Args:
        baseline_decay: EMA decay of the baseline (0.99 in the reference).
        entropy_weight: weight of the entropy bonus (1e-4 in the reference).
        baseline_init: 'first' starts the baseline at the first reward; a number starts it there
            (the reference's 0 gives PSNR-sized advantages for hundreds of steps).
        loss_weight: scales the loss.
    The baseline is a buffer, so it is saved and restored with the state dict.
    """

    def __init__(self, baseline_decay: float = 0.99, entropy_weight: float = 1e-4, baseline_init='first',
                 loss_weight: float = 1.0):
        super().__init__()
        if not 0 <= baseline_decay < 1:
            raise ValueError(f'baseline_decay must be in [0, 1), got {baseline_decay}')
        if baseline_init != 'first' and not isinstance(baseline_init, (int, float)):
            raise ValueError(f"baseline_init must be 'first' or a number, got {baseline_init!r}")
        self.baseline_decay = baseline_decay
        self.entropy_weight = entropy_weight
        self.loss_weight = loss_weight
        started = baseline_init != 'first'
        self.register_buffer('baseline', torch.tensor(float(baseline_init) if started else 0.0, dtype=torch.float64))
        self.register_buffer('started', torch.tensor(started))
        self.last_reward = math.nan  # the shaped reward of the last call (the search history records it)

    def forward(self, log_prob: torch.Tensor, entropy: torch.Tensor, reward: float):
        """Loss for one sampled genotype; updates the baseline. Returns (loss, advantage).

        A non-finite reward raises ``FloatingPointError``: the caller skips that sample so that
        it never reaches the baseline or the weights.
        """
        reward = self.shaped_reward(reward, entropy)
        if not math.isfinite(reward):
            raise FloatingPointError(f'non-finite reward {reward}')
        if not bool(self.started):
            self.reset_baseline(reward)
        self.baseline -= (1 - self.baseline_decay) * (self.baseline - reward)
        advantage = reward - float(self.baseline)
        self.last_reward = reward
        return -self.loss_weight * log_prob * advantage, advantage

    def shaped_reward(self, reward: float, entropy) -> float:
        """The reward REINFORCE uses: ``R + entropy_weight * entropy`` (entropy detached)."""
        return float(reward) + self.entropy_weight * float(entropy.detach() if torch.is_tensor(entropy) else entropy)

    def reset_baseline(self, value: float):
        """Start the baseline (again) at ``value``: the first reward, or a phase's fresh estimate."""
        self.baseline.fill_(float(value))
        self.started.fill_(True)
