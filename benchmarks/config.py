"""Section names and titles, and the sizes of every section (``make_config``)."""
import torch


SECTIONS = ('supernet', 'zeromask', 'controller', 'inference', 'data', 'options', 'precision', 'retrain')
TITLES = {
    'supernet': '1. Supernet vs fixed network, child train step',
    'zeromask': '2. Sliced vs zero-mask supernet, child train step',
    'controller': '3. Controller: sample + log-prob per genotype (M = 8, N = 16)',
    'inference': '4. Inference at x2',
    'data': '5. Data loading (PairedImageDataset, train mode)',
    'options': '6. Child-step options (supernet)',
    'precision': '7. Training precision: retrain PSNR with autocast vs fp32',
    'retrain': '8. Retrain step: dispatched ops and time, DeCoNASNet vs EDSR-baseline and CARN',
}


def make_config(device: torch.device, quick: bool = False, **overrides) -> dict:
    """Sizes of every section for ``device``; ``quick`` shrinks them for a smoke run."""
    cuda = device.type == 'cuda'
    cfg = dict(
        seed=0, num_nodes=4, num_blocks=4, density=0.5,
        num_feat=64 if cuda else 32, patch=64 if cuda else 48, batch=16 if cuda else 4,
        genotypes=20, reps=7 if cuda else 3, warmup=2 if cuda else 1,
        zeromask_genotypes=8,
        controller_reps=50, controller_batch=100,
        inference_size=256, rdn_size=256 if cuda else 64, inference_reps=5 if cuda else 3,
        data_samples=200, data_images=None, data_chunk=25, reward_images=4, reward_patches=10, reward_reps=6,
        options_genotypes=4 if cuda else 3, options_reps=5 if cuda else 3, loss_steps=3,
        compile=True, compile_fresh=2 if cuda else 1,
        # CUDA: about 3 minutes (an H200 ran about 24 variant-iterations/s of this small network)
        precision_iters=1000 if cuda else 1500, precision_feat=16, precision_blocks=4, precision_batch=8,
        precision_patch=32, precision_lr=1e-3, precision_side=512,
        retrain_batch=16 if cuda else 4, retrain_patch=64 if cuda else 48, retrain_reps=7,
    )
    if quick:
        cfg.update(num_feat=8, patch=16, batch=2, genotypes=2, reps=1, warmup=1, zeromask_genotypes=2,
                   controller_reps=3, controller_batch=20, inference_size=64, rdn_size=32, inference_reps=1,
                   data_samples=20, data_images=1, data_chunk=10, reward_images=1, reward_patches=2, reward_reps=2,
                   options_genotypes=1, options_reps=1,
                   loss_steps=2, compile=False,  # torch.compile takes minutes even for a tiny net
                   precision_iters=10, precision_feat=8, precision_blocks=2, precision_batch=2, precision_patch=16,
                   precision_side=96, retrain_batch=1, retrain_patch=8, retrain_reps=1)
    for key, value in overrides.items():
        if value is not None:
            if key not in cfg:
                raise KeyError(f'unknown config key {key!r}')
            cfg[key] = value
    cfg['quick'] = quick
    return cfg
