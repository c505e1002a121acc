"""``train.compile``: off unless asked for; the retrain step through torch.compile (on the CPU with the
aot_eager backend: dynamo and AOT autograd trace DeCoNASNet's forward and backward, no C++ compiler
needed), and the clean fallback to eager steps when compiling fails. Adam is torch's default
implementation unless ``optim_g`` asks for ``fused``."""
import deconas_plugin  # noqa: F401  (torchvision shim and registration, before basicsr)

import pytest
import torch

import tiny_options
from deconas_plugin.options import OptionError, check_compile, check_options, compile_settings


def test_compile_settings():
    """Eager unless the option file asks: no device, patch size or ``auto`` turns compiling on by itself."""
    for value in (None, 'auto', False):
        for device in ('cuda', 'cpu'):
            assert compile_settings(value, device) is None, (value, device)
    assert compile_settings(True, 'cuda') == {'mode': 'reduce-overhead'}
    assert compile_settings(True, 'cpu') == {}
    assert compile_settings({'backend': 'aot_eager'}, 'cpu') == {'backend': 'aot_eager'}
    with pytest.raises(OptionError, match=r"train.compile: unknown torch.compile argument\(s\) \['modes'\]"):
        check_compile({'train': {'compile': {'modes': 'max-autotune'}}})
    with pytest.raises(OptionError, match="train.compile must be .* got 'fast'"):
        check_compile({'train': {'compile': 'fast'}})


def _model(data, root, compile_opt, seed=0, optim=None):
    from basicsr.models import build_model
    opt = tiny_options.train_options(data, 'compile', 2)
    opt['network_g'].update(num_feat=8)
    opt['train']['optim_g'].update(optim or {})
    if compile_opt is not None:
        opt['train']['compile'] = compile_opt
    torch.manual_seed(seed)
    return build_model(tiny_options.parsed_options(opt, str(root)))


def _steps(model, n=2):
    gen = torch.Generator().manual_seed(7)
    for it in range(1, n + 1):
        model.feed_data({'lq': torch.rand(2, 3, 16, 16, generator=gen), 'gt': torch.rand(2, 3, 32, 32, generator=gen)})
        model.optimize_parameters(it)
    return {k: v.detach().clone() for k, v in model.net_g.state_dict().items()}


def test_default_retrain_step_is_plain_eager_pytorch(embedded_data, tmp_path):
    """No train.compile / optimizer flags: an eager step and torch's default Adam (not fused)."""
    model = _model(embedded_data, tmp_path / 'default', None)
    assert model.train_forward is None and model.compile_args is None
    group = model.optimizer_g.param_groups[0]
    assert type(model.optimizer_g) is torch.optim.Adam and not group['fused'] and not group['capturable']
    fused = _model(embedded_data, tmp_path / 'fused', None, optim={'fused': True})
    assert fused.optimizer_g.param_groups[0]['fused'] is True  # the option file's way to ask for it
    ref, got = _steps(model), _steps(fused)
    for k in ref:
        assert torch.allclose(ref[k], got[k], rtol=1e-5, atol=1e-6), k


def test_compiled_retrain_step_matches_the_eager_one(embedded_data, tmp_path, caplog):
    eager = _model(embedded_data, tmp_path / 'eager', False)
    assert eager.train_forward is None
    compiled = _model(embedded_data, tmp_path / 'compiled', {'backend': 'aot_eager'})
    assert compiled.train_forward is not None and compiled.net_g is not compiled.train_forward
    ref, got = _steps(eager), _steps(compiled)
    assert compiled.compile_checked and compiled.train_forward is not None  # compiled and kept
    assert ref.keys() == got.keys()  # net_g is the plain network: its checkpoints have no _orig_mod. prefix
    for k in ref:
        assert torch.allclose(ref[k], got[k], rtol=1e-5, atol=1e-6), k
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in compiled.net_g.parameters())


def test_compile_failure_falls_back_to_eager_steps(embedded_data, tmp_path):
    from deconas_plugin.models import deconas_sr_model
    messages = []
    logger = deconas_sr_model.get_root_logger()
    logger.addHandler(handler := __import__('logging').Handler())
    handler.emit = lambda record: messages.append(record.getMessage())
    try:
        model = _model(embedded_data, tmp_path / 'bad', {'backend': 'no_such_backend'})
        ref = _steps(_model(embedded_data, tmp_path / 'eager', False))
        got = _steps(model)
    finally:
        logger.removeHandler(handler)
    assert model.train_forward is None
    assert any('train.compile: torch.compile failed' in m and 'training continues eagerly' in m for m in messages)
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_a_compiled_first_step_that_fails_is_redone_eagerly(embedded_data, tmp_path):
    model = _model(embedded_data, tmp_path / 'fails', {'backend': 'aot_eager'})

    def broken(x):
        raise RuntimeError('stand-in for a graph torch cannot compile')
    model.train_forward = broken
    got = _steps(model)
    ref = _steps(_model(embedded_data, tmp_path / 'eager', False))
    assert model.train_forward is None and all(torch.equal(ref[k], got[k]) for k in ref)


def test_removed_cuda_graph_option_is_named_with_its_replacement():
    with pytest.raises(OptionError, match=r'train.cuda_graph is no longer an option; use train.compile: true'):
        check_options({'scale': 2, 'train': {'cuda_graph': True}})
    check_options({'scale': 2, 'train': {'compile': True}})


def test_bf16_autocast_step_through_the_shared_loss_code(embedded_data, tmp_path):
    """The autocast step (forward and pixel loss under autocast, perceptual loss and optimizer step outside)
    trains, compiled or not, with fp32 weights."""
    for compile_opt in (False, {'backend': 'aot_eager'}):
        model = _model(embedded_data, tmp_path / str(bool(compile_opt)), compile_opt)
        model.opt['train']['autocast'] = 'bf16'
        model.setup_autocast()
        before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
        after = _steps(model)
        assert model.log_dict['l_pix'] > 0 and any(not torch.equal(before[k], after[k]) for k in before)
        assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in after.values())
