#!/bin/bash
# A DeCoNAS search (or retrain) under slurm that survives preemption and the time limit.
#
#   sbatch scripts/slurm_search.sh <option file>
#
# One task per GPU (--launcher slurm; the number of tasks is the world size), every start with
# --auto_resume. Two minutes before the time limit slurm sends SIGUSR1 to every task; on SIGUSR1 or
# SIGTERM (preemption, scancel, scontrol requeue) the ranks finish the current iteration, rank 0
# writes a training state and every rank exits with status 75, and this script requeues the job,
# which continues exactly where it stopped. Exit statuses of train.py: 0 finished, 75 stopped with a
# training state, 2 a mistake in the option file, 1 anything else (a crash, or a rank that stopped
# answering within dist_params.timeout: resubmit to continue from the last training state).
# Edit the #SBATCH lines for your cluster (partition, account, nodes, GPUs, time).
#SBATCH --job-name=deconas-search
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --signal=USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
set -u
opt=${1:?usage: sbatch scripts/slurm_search.sh <option file>}
cd "${SLURM_SUBMIT_DIR:-.}"
python=${PYTHON:-.venv/bin/python}
# A port of this job's own, so that two jobs on one node do not meet on one store.
export MASTER_PORT=${MASTER_PORT:-$((20000 + ${SLURM_JOB_ID:-0} % 20000))}

# A SIGTERM to this shell (preemption) must not end it before the ranks have written their state:
# bash runs the trap once srun has returned.
trap 'echo "SIGTERM: the ranks stop after the current iteration"' TERM

srun "$python" deconas_plugin/train.py -opt "$opt" --launcher slurm --auto_resume
status=$?
case $status in
  0) echo "finished" ;;
  75) echo "stopped with a training state; requeueing job $SLURM_JOB_ID"
      scontrol requeue "$SLURM_JOB_ID" ;;
  2) echo "a mistake in the option file (see the error above); not requeued" ;;
  *) echo "failed with exit status $status; resubmit to resume from the last training state" ;;
esac
exit $status
