"""Side-by-side speed measurements of the DeCoNAS implementation (``tools/benchmark.py`` is the CLI),
and the effect of the training precision on a retrained network's PSNR (section 7).

Not part of the installed package: a package of the project root, beside its results
(``benchmarks/cpu-2core/``); ``tools/benchmark.py`` puts the project root on ``sys.path``.

Every number is a ratio or a rate measured in one process, A and B interleaved (ABBA order), each
after a warm-up, as the median of several repetitions: on a busy machine absolute times move, the
ratios much less. ``torch.cuda.synchronize`` brackets every timed call on CUDA.

Sections (``--only`` takes their names, ``config.SECTIONS``, or their numbers 1-8): what each measures and
its goal is the list of ``tools/benchmark.py -h`` and, in detail, the docstring of its module (``supernet``,
``zeromask``, ``controller``, ``inference``, ``data``, ``options``, ``precision``, ``retrain``).

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
  ``ops_before``, ``meets_goal``, ``step_ms`` (``<network> fp32|bf16``), ``params``, ``ratio_vs_edsr``
  (``fp32``, ``bf16``), ``setup``; on CUDA ``cuda``: ``kernels`` (``<network> fp32|bf16``: a count or an error
  string), ``paths`` (``adam``, ``cuda_graph``, ``compile``: ``rows`` per precision or ``<network> <precision>``
  with ``first_step_s``, ``ms`` (``eager`` and the path), ``speedup``, ``max_rel_weight_diff``, or ``error``),
  ``verdicts`` (per option: the row and its ``verdict``).

Package layout: ``config`` (SECTIONS, TITLES, ``make_config``), ``machine`` (``machine_info``,
``choose_threads``), ``timing`` (``timed``, ``interleaved``, ``median_ms``, ``interleaved_ms``, ``TrainStep``),
``common`` (shared builders and number formatting), one module per section holding its ``bench_<name>`` and its
``md_<name>`` renderer (``supernet``, ``zeromask``, ``controller``, ``inference``, ``data``,
``options``, ``precision``, ``retrain``), ``markdown`` (``render_markdown``: header, summary, section dispatch)
and ``run`` (``run_benchmark``, ``write_results``, ``rerender``, ``parse_only``, RUNNERS). Import them from
their modules (``from benchmarks.run import run_benchmark``): the package itself re-exports nothing.
"""
