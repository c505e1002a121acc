import pytest
import torch

import deconas_plugin  # noqa: F401
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY
from deconas_plugin.complexity import count_params, max_params
from deconas_plugin.genotype import Genotype


@pytest.mark.parametrize('fusion', [False, True])
def test_log_prob_of_sample_matches(fusion):
    torch.manual_seed(0)
    ctrl = ARCH_REGISTRY.get('DeCoNASController')(num_nodes=4, num_blocks=3, feature_fusion_search=fusion)
    for _ in range(5):
        g, log_prob, entropy = ctrl.sample()
        assert g.has_fusion_bits == fusion and g.num_nodes == 4
        assert torch.allclose(ctrl.log_prob(g), log_prob, atol=1e-5)
        assert entropy > 0 and log_prob < 0
    gs, lps, _ = ctrl.sample_many(4)
    assert torch.allclose(torch.stack([ctrl.log_prob(g) for g in gs]), lps, atol=1e-5)


def test_log_prob_is_differentiable_and_greedy_is_deterministic():
    ctrl = ARCH_REGISTRY.get('DeCoNASController')(num_nodes=3, num_blocks=2)
    ctrl.log_prob('7 0 1 2 3 4').backward()
    assert all(h.weight.grad.abs().sum() > 0 for h in ctrl.op_heads)
    assert ctrl.greedy() == ctrl.greedy()


def run_reinforce(ctrl, reward_of, steps, lr=0.01, batch=8):
    """REINFORCE with the project's loss on a synthetic reward, ``batch`` samples per update."""
    loss_fn = LOSS_REGISTRY.get('REINFORCELoss')(baseline_decay=0.9, entropy_weight=1e-4)
    opt = torch.optim.Adam(ctrl.parameters(), lr=lr)
    for _ in range(steps):
        samples, log_probs, entropies = ctrl.sample_many(batch)
        loss = sum(loss_fn(lp, e, reward_of(g))[0] for g, lp, e in zip(samples, log_probs, entropies)) / batch
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_reinforce_finds_a_hidden_target_genotype():
    target = Genotype.parse('5 3 6 0 7 2')
    torch.manual_seed(0)
    ctrl = ARCH_REGISTRY.get('DeCoNASController')(num_nodes=3, num_blocks=2)
    matches = lambda g: sum(a == b for a, b in zip(g.bits(), target.bits()))  # noqa: E731
    run_reinforce(ctrl, matches, steps=100)
    assert ctrl.greedy() == target


def test_complexity_penalty_lowers_sampled_params():
    m, n, c = 3, 2, 16
    pmax = max_params(n, m, c)
    target = Genotype.parse('7 7 7 7 7 7')  # the synthetic PSNR prefers big genotypes...

    def mean_params(alpha):
        torch.manual_seed(1)
        ctrl = ARCH_REGISTRY.get('DeCoNASController')(num_nodes=m, num_blocks=n)
        reward = LOSS_REGISTRY.get('ComplexityPenalizedReward')(alpha=alpha, params_max=pmax)
        psnr = lambda g: 0.05 * sum(a == b for a, b in zip(g.bits(), target.bits()))  # noqa: E731
        run_reinforce(ctrl, lambda g: reward(psnr(g), count_params(g, n, c)), steps=60)
        with torch.no_grad():
            samples, _, _ = ctrl.sample_many(200)
        return sum(count_params(g, n, c) for g in samples) / len(samples)

    assert mean_params(alpha=2.0) < 0.8 * mean_params(alpha=0.0)  # ...the penalty pulls them down


def test_reinforce_loss_baseline_and_nonfinite_reward():
    loss_fn = LOSS_REGISTRY.get('REINFORCELoss')(baseline_decay=0.5, entropy_weight=0.0)
    lp, ent = torch.tensor(-2.0, requires_grad=True), torch.tensor(1.0)
    loss, adv = loss_fn(lp, ent, 30.0)  # baseline starts at the first reward
    assert float(loss_fn.baseline) == 30.0 and adv == 0.0
    loss, adv = loss_fn(lp, ent, 32.0)
    assert float(loss_fn.baseline) == 31.0 and adv == 1.0 and float(loss.detach()) == pytest.approx(2.0)
    with pytest.raises(FloatingPointError):
        loss_fn(lp, ent, float('nan'))
    assert float(loss_fn.baseline) == 31.0  # untouched


def _reference_score(ctrl, bits):
    """log-prob and entropy of one genotype's bits (D,), one nn.LSTM step at a time (test oracle)."""
    k = ctrl.num_ops
    groups = ctrl.num_nodes * (ctrl.num_nodes + 1) // 2
    widths = [k] * groups + ([ctrl.num_nodes, ctrl.num_blocks] if ctrl.feature_fusion_search else [])
    heads = [ctrl.op_heads[t % len(ctrl.op_heads)] for t in range(groups)]
    if ctrl.feature_fusion_search:
        heads += [ctrl.local_heads, ctrl.global_heads]
    inp, state, col, log_prob, entropy = ctrl.start, None, 0, 0., 0.
    for t, (head, w) in enumerate(zip(heads, widths)):
        out, state = ctrl.lstm(inp, state)
        p = torch.sigmoid(ctrl.tanh_constant * torch.tanh(head(out[0, 0])))
        b = bits[col:col + w]
        log_prob = log_prob + (b * p.log() + (1 - b) * (1 - p).log()).sum()
        entropy = entropy - (p * p.log() + (1 - p) * (1 - p).log()).sum()
        if t < groups:
            code = int(sum(int(v) << (k - 1 - i) for i, v in enumerate(b.tolist())))
            inp = ctrl.code_embedding.weight[code].view(1, 1, -1)
        elif t == groups:
            inp = ctrl.local_embedding(b).view(1, 1, -1)
        col += w
    return log_prob, entropy


@pytest.mark.parametrize('fusion,shared', [(False, False), (True, False), (True, True)])
def test_score_matches_a_step_by_step_reference(fusion, shared):
    torch.manual_seed(0)
    ctrl = ARCH_REGISTRY.get('DeCoNASController')(num_nodes=4, num_blocks=3, feature_fusion_search=fusion,
                                                  shared_heads=shared)
    bits = ctrl.decide(6, 'sample')
    log_prob, entropy = ctrl.score(bits)
    for i in range(6):
        ref_lp, ref_ent = _reference_score(ctrl, bits[i])
        assert torch.allclose(log_prob[i], ref_lp, atol=1e-4) and torch.allclose(entropy[i], ref_ent, atol=1e-4)


def test_decide_draws_genotypes_with_the_scored_probabilities():
    """Empirical frequencies of decide()'s genotypes match exp(score) (M = 2: 512 genotypes)."""
    torch.manual_seed(0)
    ctrl = ARCH_REGISTRY.get('DeCoNASController')(num_nodes=2, num_blocks=2)
    with torch.no_grad():
        for p in ctrl.parameters():
            p.mul_(8)  # a peaked policy, so that a few genotypes carry most of the mass
        draws = ctrl.decide(20000, 'sample')
        unique, counts = draws.unique(dim=0, return_counts=True)
        prob = ctrl.score(unique)[0].exp()
    assert 0.9 < float(prob.sum()) <= 1 + 1e-4  # distinct genotypes; those seen carry nearly all the mass
    top = counts.argsort(descending=True)[:5]
    for i in top:
        freq, p = float(counts[i]) / 20000, float(prob[i])
        assert abs(freq - p) < 4 * (p * (1 - p) / 20000)**0.5 + 1e-3, (freq, p)
