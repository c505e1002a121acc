"""BasicSR's training loop (``basicsr.train.train_pipeline``) made to survive a cluster's faults.

The same steps as BasicSR's loop (options, resume, loggers, loaders, model, iterations with logging,
checkpoints and validation), calling BasicSR's functions through ``basicsr.train`` so that the
patches of ``utils.basicsr_patches`` apply, plus:

* a stop signal (``utils.preemption``) ends the run after the current iteration, with a training
  state written by rank 0 and exit status 75 on every rank;
* the ranks wait for rank 0's checkpoints and validation on the store, not in a collective (see
  ``utils.dist.wait_for_rank0``), so only a rank that stops answering hits ``dist_params.timeout``;
* a collective that fails (a rank stalled past the timeout, or died) ends the run with one
  ``PeerError`` naming the iteration and the rank that did not answer;
* a resumed run says where it resumed, in the log and in tensorboard (``resume`` text, ``resumed_at_iter``);
* the process group ends before the interpreter exits (``utils.dist.end_process_group``), so no
  process of a finished, stopped or failed run aborts on gloo's threads at its exit.
"""
import datetime
import functools
import logging
import time
from os import path as osp

import torch
import torch.distributed

from . import dist as dist_util
from .preemption import EXIT_PREEMPTED, ignore_stop_signals, install_stop_handlers, received_signal


def _worker_init(original, worker_id):
    ignore_stop_signals()
    if original is not None:
        original(worker_id)


def _is_collective_failure(error: Exception) -> bool:
    """Whether ``error`` comes from a collective whose peer is gone (gloo raises plain RuntimeErrors too)."""
    if isinstance(error, torch.distributed.DistError):
        return True
    text = str(error)
    return any(s in text for s in ('gloo', 'Gloo', 'Connection closed by peer', 'Connection reset by peer',
                                   'Timed out waiting', 'NCCL'))


def train_pipeline(root_path):
    """Train (or search) with the option file of the command line; see the module docstring."""
    import basicsr.train as bt
    from basicsr.models import build_model
    from basicsr.utils import AvgTimer, MessageLogger, get_env_info, get_root_logger, get_time_str, make_exp_dirs
    from basicsr.utils import mkdir_and_rename
    from basicsr.utils.options import copy_opt_file, dict2str, parse_options

    opt, args = parse_options(root_path, is_train=True)
    opt['root_path'] = root_path
    torch.backends.cudnn.benchmark = True

    resume_state = bt.load_resume_state(opt)
    if resume_state is None:
        make_exp_dirs(opt)
        if opt['logger'].get('use_tb_logger') and 'debug' not in opt['name'] and opt['rank'] == 0:
            mkdir_and_rename(osp.join(opt['root_path'], 'tb_logger', opt['name']))
    copy_opt_file(args.opt, opt['path']['experiments_root'])
    log_file = osp.join(opt['path']['log'], f"train_{opt['name']}_{get_time_str()}.log")
    logger = get_root_logger(logger_name='basicsr', log_level=logging.INFO, log_file=log_file)
    logger.info(get_env_info())
    logger.info(dict2str(opt))
    tb_logger = bt.init_tb_loggers(opt)

    train_loader, train_sampler, val_loaders, total_epochs, total_iters = bt.create_train_val_dataloader(opt, logger)
    # torchrun signals a worker's whole process group: loader workers must not die of it
    train_loader.worker_init_fn = functools.partial(_worker_init, train_loader.worker_init_fn)
    outcome = None  # None (finished), the stop's SystemExit or a PeerError
    try:
        _train(opt, logger, tb_logger, resume_state, train_loader, train_sampler, val_loaders, total_epochs,
               total_iters, build_model, AvgTimer, MessageLogger)
    except SystemExit as e:
        if e.code != EXIT_PREEMPTED:
            raise
        outcome = SystemExit(EXIT_PREEMPTED)
    except RuntimeError as e:
        if not (dist_util.is_distributed() and _is_collective_failure(e)):
            raise
        outcome = dist_util.peer_error(e)
        outcome.__cause__ = e.with_traceback(None)
        logger.error(str(outcome))
    finally:
        if tb_logger:
            tb_logger.close()
    # Past the handlers no traceback holds _train's frame, so the model (a DDP model holds the group)
    # is gone and ending the group joins its threads.
    dist_util.end_process_group(clean=not isinstance(outcome, dist_util.PeerError))
    if outcome is not None:
        raise outcome


def _train(opt, logger, tb_logger, resume_state, train_loader, train_sampler, val_loaders, total_epochs, total_iters,
           build_model, AvgTimer, MessageLogger):
    from basicsr.data.prefetch_dataloader import CPUPrefetcher, CUDAPrefetcher

    model = build_model(opt)
    if resume_state:
        model.resume_training(resume_state)
        start_epoch, current_iter = resume_state['epoch'], resume_state['iter']
        logger.info(f'Resuming training from epoch: {start_epoch}, iter: {current_iter}.')
        if tb_logger:
            tb_logger.add_text('resume', f"resumed from iteration {current_iter} ({opt['path']['resume_state']})",
                               current_iter)
            tb_logger.add_scalar('resumed_at_iter', current_iter, current_iter)
    else:
        start_epoch = current_iter = 0
    msg_logger = MessageLogger(opt, current_iter, tb_logger)

    prefetch_mode = opt['datasets']['train'].get('prefetch_mode')
    if prefetch_mode is None or prefetch_mode == 'cpu':
        prefetcher = CPUPrefetcher(train_loader)
    elif prefetch_mode == 'cuda':
        prefetcher = CUDAPrefetcher(train_loader, opt)
        logger.info(f'Use {prefetch_mode} prefetch dataloader')
        if opt['datasets']['train'].get('pin_memory') is not True:
            raise ValueError('Please set pin_memory=True for CUDAPrefetcher.')
    else:
        raise ValueError(f"Wrong prefetch_mode {prefetch_mode}. Supported ones are: None, 'cuda', 'cpu'.")

    install_stop_handlers()
    logger.info(f'Start training from epoch: {start_epoch}, iter: {current_iter}')
    data_timer, iter_timer = AvgTimer(), AvgTimer()
    start_time = time.time()
    epoch = start_epoch
    for epoch in range(start_epoch, total_epochs + 1):
        train_sampler.set_epoch(epoch)
        prefetcher.reset()
        train_data = prefetcher.next()
        while train_data is not None:
            data_timer.record()
            current_iter += 1
            if current_iter > total_iters:
                break
            dist_util.set_step(current_iter)
            model.update_learning_rate(current_iter, warmup_iter=opt['train'].get('warmup_iter', -1))
            model.feed_data(train_data)
            model.optimize_parameters(current_iter)
            iter_timer.record()
            if current_iter == 1:
                msg_logger.reset_start_time()
            if current_iter % opt['logger']['print_freq'] == 0:
                log_vars = {'epoch': epoch, 'iter': current_iter, 'lrs': model.get_current_learning_rate(),
                            'time': iter_timer.get_avg_time(), 'data_time': data_timer.get_avg_time()}
                log_vars.update(model.get_current_log())
                msg_logger(log_vars)
            saved = current_iter % opt['logger']['save_checkpoint_freq'] == 0
            if saved:
                logger.info('Saving models and training states.')
                model.save(epoch, current_iter)
            validated = opt.get('val') is not None and current_iter % opt['val']['val_freq'] == 0
            if validated:
                if len(val_loaders) > 1:
                    logger.warning('Multiple validation datasets are *only* supported by SRModel.')
                for val_loader in val_loaders:
                    model.validation(val_loader, current_iter, tb_logger, opt['val']['save_img'])
            if saved or validated:  # rank 0's work: the others wait on the store, not in a timed collective
                dist_util.wait_for_rank0(f'iter_{current_iter}')
            if dist_util.any_rank(received_signal() is not None, model.device):
                _stop(opt, logger, model, epoch, current_iter, saved)
            data_timer.start()
            iter_timer.start()
            train_data = prefetcher.next()

    consumed_time = str(datetime.timedelta(seconds=int(time.time() - start_time)))
    logger.info(f'End of training. Time consumed: {consumed_time}')
    logger.info('Save the latest model.')
    model.save(epoch=-1, current_iter=-1)
    if opt.get('val') is not None:
        for val_loader in val_loaders:
            model.validation(val_loader, current_iter, tb_logger, opt['val']['save_img'])


def _stop(opt, logger, model, epoch, current_iter, saved):
    """After iteration ``current_iter`` on every rank: rank 0 writes the training state, all exit 75."""
    if not saved:
        model.save(epoch, current_iter)
    dist_util.wait_for_rank0(f'stop_{current_iter}')
    path = osp.join(opt['path']['training_states'], f'{current_iter}.state')
    why = received_signal() or 'another rank\'s stop signal'
    logger.info(f'Stopped by {why} after iteration {current_iter}: training state {path} written; '
                f'exit status {EXIT_PREEMPTED} (resume with --auto_resume)')
    raise SystemExit(EXIT_PREEMPTED)
