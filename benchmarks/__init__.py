"""Side-by-side speed measurements of the DeCoNAS implementation (``tools/benchmark.py`` is the CLI),
and the effect of the training precision on a retrained network's PSNR (section 7).

Not part of the installed package: a package of the project root, beside its results
(``benchmarks/cpu-2core/``); ``tools/benchmark.py`` puts the project root on ``sys.path``.

Every number is a ratio or a rate measured in one process, A and B interleaved (ABBA order), each
after a warm-up, as the median of several repetitions: on a busy machine absolute times move, the
ratios much less. ``torch.cuda.synchronize`` brackets every timed call on CUDA.

Sections (``--only`` takes these names, or their numbers 1-8):

1. ``supernet`` -- one child train step (zero_grad, forward, L1, backward, Adam step) of
   ``DeCoNetSupernet(x, g)`` vs ``supernet.extract(g)`` (same weights, batch, patch) for random
   genotypes; goal: mean ratio supernet / fixed <= 1.10.
2. ``zeromask`` -- the sliced supernet vs a zero-mask supernet (``ZeroMaskSupernet``: every
   SubsetInput layer reads all of its inputs with its full weight, the unchosen ones multiplied by 0,
   as the reference code does for the dilated conv), checked to give the same output first (in strict
   fp32: no TF32 on CUDA; bound 1e-5); goal: sliced >= 1.5x faster.
3. ``controller`` -- ms per genotype of sample + log-prob at M = 8, N = 16 (FF off and on), one
   genotype at a time (a controller step) and batched (``sample_many``); and the child steps' draws
   (no log-prob), one unroll per genotype vs one batched unroll per controller phase (what the
   search does); goal <= 2 ms on CPU.
4. ``inference`` -- DeCoNASNet (paper genotype), CARN (multi-scale and single), RDN, EDSR-baseline
   at x2: ms per image, params, MACs (``complexity_table.model_complexity``), GMAC/s.
5. ``data`` -- BasicSR ``PairedImageDataset`` (train mode: crop, flips, rotations) samples/s from
   LMDB vs from folders of the same sub-images (made with ``tools/prepare_train.py``); and ms per
   reward patch from whole DIV2K-sized images vs from their 480-px sub-images in an LMDB.
6. ``options`` -- the supernet child step with autocast (bf16; fp16 on CUDA) and
   ``torch.compile`` (compile time for the first, a fresh and a repeated genotype; steady state),
   speed ratios vs the default and whether the losses match.
7. ``precision`` -- a small DeCoNASNet (paper genotype, N = 4, M = 4, C = 16) retrained from the same
   initial weights on the same batches (embedded train split, batch 8, LR patch 32, Adam 1e-3 halved
   at 1/2 and 3/4; 1500 iterations on CPU, 1000 on CUDA, about 3 minutes) in fp32 with two batch seeds (the run-to-run
   noise), with bf16 autocast (and fp16 autocast + GradScaler on CUDA); ms per iteration, final loss,
   and fp32 PSNR-Y / SSIM-Y on the embedded test images, differences vs fp32.
8. ``retrain`` -- the retrain step of DeCoNASNet (paper genotype, C = 64) vs EDSR-baseline and CARN: dispatched
   aten ops per step (``deconas_plugin.utils.op_count``; goal: DeCoNASNet forward + L1 + backward <= 800), ms per step in fp32
   and bf16 and the DeCoNASNet / EDSR ratios, DeCoNASNet with each separable-conv implementation; on CUDA also
   kernels per step, fused vs foreach Adam, ``torch.compile(mode='reduce-overhead')`` and whole-step CUDA graphs.

JSON (``benchmark.json``) keys: ``machine`` (cpu, cores, torch, device, device_name, ...),
``config``, ``sections`` (one dict per section run, keyed by the names above; a failed section
holds ``error``), ``wall_s``. Per section:

* ``supernet``: ``mean_ratio``, ``goal_ratio_max``, ``meets_goal``, ``per_genotype`` (list of
  ``genotype``, ``params_fixed``, ``supernet_ms``, ``fixed_ms``, ``ratio``), ``max_abs_diff``.
* ``zeromask``: ``max_abs_diff`` (over the genotypes), ``equivalent``, ``mean_speedup``
  (zero-mask / sliced step time), ``goal_speedup_min``, ``meets_goal``, ``per_genotype``.
* ``controller``: ``configs`` (list, one per FF setting: ``ff``, ``single_ms``, ``batched_ms``,
  ``child_draw_single_ms``, ``child_draw_batched_ms``, ``breakdown_ms``, ``profile_top``),
  ``goal_ms``, ``paths_meeting_goal_on_cpu``, ``meets_goal``.
* ``inference``: ``rows`` (``model``, ``lr_hw``, ``ms``, ``params``, ``macs``, ``gmac_per_s``).
* ``data``: ``lmdb_samples_per_s``, ``disk_samples_per_s``, ``ratio_lmdb_over_disk``,
  ``num_subimages``, ``reward`` (``whole_ms_per_patch``, ``sub_lmdb_ms_per_patch``, ``speedup``).
* ``options``: ``variants`` (``name``, ``ms``, ``speedup``, ``loss_rel_diff``, ``loss_ok``),
  ``compile`` (``first_compile_s``, ``fresh_compile_s``, ``repeated_first_step_ms``,
  ``steady_ms``, ``eager_ms``, ``steady_speedup`` or ``error``), ``recommended`` (``autocast`` (always
  None: fp32 is the default), ``autocast_fastest``, ``autocast_psnr`` (section 7's verdict),
  ``torch_compile_search``, ``torch_compile_retrain``).
* ``precision``: ``variants`` (``name``, ``autocast`` (None, ``bfloat16``, ``float16``), ``batch_seed``
  (A, B), ``ms_per_iter``, ``speedup`` (vs fp32 seed A), ``first_loss``, ``final_loss``,
  ``nonfinite_losses``, ``psnr_y``, ``ssim_y``, ``per_image``, ``psnr_diff``, ``ssim_diff`` (vs fp32 seed
  A), ``within_seed_noise``), ``seed_noise_psnr_db``, ``seed_noise_ssim``, ``batch_seeds``,
  ``train_images``, ``test_images``, ``setup``.
* ``retrain``: ``ops`` (per network: ``forward_backward``, ``optimizer``, ``step``, ``top``),
  ``supernet_child_ops`` (the same for the supernet's child step on the paper genotype), ``goal_ops``,
  ``ops_before``, ``meets_goal``, ``step_ms`` (``<network> fp32|bf16``), ``ratio_vs_edsr`` (``fp32``, ``bf16``),
  ``setup``; on CUDA ``cuda`` (``kernels``, ``adam``, ``compile``,
  ``cuda_graph``: ms or an error string).

Package layout: ``config`` (SECTIONS, TITLES, ``make_config``), ``machine`` (``machine_info``,
``choose_threads``), ``timing`` (``timed``, ``interleaved``, ``median_ms``, ``TrainStep``), ``common``
(shared builders and number formatting), one module per section holding its ``bench_<name>`` and its
``md_<name>`` renderer (``supernet``, ``zeromask``, ``controller``, ``inference``, ``data``,
``options``, ``precision``, ``retrain``), ``markdown`` (``render_markdown``: header, summary, section dispatch)
and ``run`` (``run_benchmark``, ``write_results``, ``rerender``, ``parse_only``, RUNNERS). Import them from
their modules (``from benchmarks.run import run_benchmark``): the package itself re-exports nothing.
"""
