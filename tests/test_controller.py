import pytest
import torch

import deconas_plugin  # noqa: F401
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY
from deconas_plugin.complexity import count_params, max_params
from deconas_plugin.genotype import Genotype
from deconas_plugin.reward import penalized_reward


@pytest.mark.parametrize('fusion', [False, True])
def test_sample_returns_the_log_prob_and_entropy_of_its_genotype(fusion):
    """sample() / sample_many() / log_prob() against the step-by-step oracle ``_reference_score``.

    (That the genotypes are drawn with these probabilities is
    ``test_decide_draws_genotypes_with_the_scored_probabilities``.)
    """
    torch.manual_seed(0)
    ctrl = ARCH_REGISTRY.get('DeCoNASController')(num_nodes=4, num_blocks=3, feature_fusion_search=fusion)
    for _ in range(5):
        g, log_prob, entropy = ctrl.sample()
        assert g.has_fusion_bits == fusion and g.num_nodes == 4
        ref_lp, ref_ent = _reference_score(ctrl, torch.tensor(g.bits(), dtype=torch.float32))
        assert torch.allclose(log_prob, ref_lp, atol=1e-4) and torch.allclose(entropy, ref_ent, atol=1e-4)
        assert torch.allclose(ctrl.log_prob(g), ref_lp, atol=1e-4)
    gs, lps, ents = ctrl.sample_many(4)
    for g, lp, ent in zip(gs, lps, ents):
        ref_lp, ref_ent = _reference_score(ctrl, torch.tensor(g.bits(), dtype=torch.float32))
        assert torch.allclose(lp, ref_lp, atol=1e-4) and torch.allclose(ent, ref_ent, atol=1e-4)


def test_log_prob_is_differentiable():
    ctrl = ARCH_REGISTRY.get('DeCoNASController')(num_nodes=3, num_blocks=2)
    ctrl.log_prob('7 0 1 2 3 4').backward()
    assert all(h.weight.grad.abs().sum() > 0 for h in ctrl.op_heads)


@pytest.mark.parametrize('fusion,shared', [(False, False), (True, False), (True, True)])
def test_greedy_takes_the_most_likely_bit_at_every_step(fusion, shared):
    """greedy() = per-step argmax: each bit is 1 iff its probability, given the greedy bits before
    it, exceeds 1/2 (checked with the step-by-step oracle on random, peaked controllers)."""
    torch.manual_seed(3)
    for _ in range(4):
        ctrl = ARCH_REGISTRY.get('DeCoNASController')(num_nodes=4, num_blocks=3, feature_fusion_search=fusion,
                                                      shared_heads=shared)
        with torch.no_grad():
            for p in ctrl.parameters():
                p.mul_(5)  # logits far from 0, so that the greedy bits differ between controllers
        bits = torch.tensor(ctrl.greedy().bits(), dtype=torch.float32)
        _, _, probs = _reference_score(ctrl, bits, with_probs=True)
        assert torch.equal(bits, (probs > 0.5).float())


def test_greedy_is_not_always_the_most_likely_genotype():
    """What greedy() is not: the per-step argmax can miss the genotype of highest probability.

    Brute force over all 512 genotypes of M = 2 for seeded random controllers finds cases where a
    greedy bit early on lowers the later steps' probabilities more than it gains (the README's
    wording of greedy() rests on this).
    """
    torch.manual_seed(0)
    gaps = []
    for _ in range(20):
        ctrl = ARCH_REGISTRY.get('DeCoNASController')(num_nodes=2, num_blocks=2)
        with torch.no_grad():
            for p in ctrl.parameters():
                p.mul_(8)
            codes = torch.arange(512)
            all_bits = ((codes[:, None] >> torch.arange(8, -1, -1)) & 1).float()
            log_probs = ctrl.score(all_bits)[0]
            greedy_lp = ctrl.log_prob(ctrl.greedy())
        assert torch.allclose(log_probs.exp().sum(), torch.tensor(1.), atol=1e-4)
        assert greedy_lp <= log_probs.max() + 1e-5
        gaps.append(float(log_probs.max() - greedy_lp))
    assert max(gaps) > 0.1 and min(gaps) < 1e-5  # sometimes the most likely one, not always


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
        psnr = lambda g: 0.05 * sum(a == b for a, b in zip(g.bits(), target.bits()))  # noqa: E731
        run_reinforce(ctrl, lambda g: penalized_reward(psnr(g), count_params(g, n, c), alpha, pmax), steps=60)
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


def _reference_score(ctrl, bits, with_probs=False):
    """log-prob and entropy of one genotype's bits (D,), one nn.LSTM step at a time (test oracle);
    ``with_probs``: also the probability (D,) of a 1 at every decision, given the bits before it."""
    k = ctrl.num_ops
    groups = ctrl.num_nodes * (ctrl.num_nodes + 1) // 2
    widths = [k] * groups + ([ctrl.num_nodes, ctrl.num_blocks] if ctrl.feature_fusion_search else [])
    heads = [ctrl.op_heads[t % len(ctrl.op_heads)] for t in range(groups)]
    if ctrl.feature_fusion_search:
        heads += [ctrl.local_heads, ctrl.global_heads]
    inp, state, col, log_prob, entropy, probs = ctrl.start, None, 0, 0., 0., []
    for t, (head, w) in enumerate(zip(heads, widths)):
        out, state = ctrl.lstm(inp, state)
        p = torch.sigmoid(ctrl.tanh_constant * torch.tanh(head(out[0, 0])))
        b = bits[col:col + w]
        probs.append(p)
        log_prob = log_prob + (b * p.log() + (1 - b) * (1 - p).log()).sum()
        entropy = entropy - (p * p.log() + (1 - p) * (1 - p).log()).sum()
        if t < groups:
            code = int(sum(int(v) << (k - 1 - i) for i, v in enumerate(b.tolist())))
            inp = ctrl.code_embedding.weight[code].view(1, 1, -1)
        elif t == groups:
            inp = ctrl.local_embedding(b).view(1, 1, -1)
        col += w
    if with_probs:
        return log_prob, entropy, torch.cat(probs)
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


@pytest.mark.parametrize('fusion', [False, True])
def test_decide_draws_genotypes_with_the_scored_probabilities(fusion):
    """Empirical frequencies of sample_many()'s genotypes match exp(score) (M = 2: 512 genotypes;
    M = 1 with fusion bits, N = 2: 64)."""
    torch.manual_seed(0)
    ctrl = ARCH_REGISTRY.get('DeCoNASController')(num_nodes=1 if fusion else 2, num_blocks=2,
                                                  feature_fusion_search=fusion)
    with torch.no_grad():
        for p in ctrl.parameters():
            p.mul_(8)  # a peaked policy, so that a few genotypes carry most of the mass
        genotypes = ctrl.sample_many(20000)[0]
        draws = torch.stack([ctrl.genotype_to_bits(g) for g in genotypes])
        unique, counts = draws.unique(dim=0, return_counts=True)
        prob = ctrl.score(unique)[0].exp()
    assert 0.9 < float(prob.sum()) <= 1 + 1e-4  # distinct genotypes; those seen carry nearly all the mass
    top = counts.argsort(descending=True)[:5]
    for i in top:
        freq, p = float(counts[i]) / 20000, float(prob[i])
        assert abs(freq - p) < 4 * (p * (1 - p) / 20000)**0.5 + 1e-3, (freq, p)
