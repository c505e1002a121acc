"""One part in its own process: ``python -m benchmarks.gpu_evidence.worker <work>`` reads ``<work>.in.json``
(``fn``, ``args``, ``context``) and writes ``<work>.out.json`` (``runner.call_part``'s record: ``status`` done
with ``result``, or failed with ``error``). The runner kills the process group at the part's time limit."""
import json
import sys

from deconas_plugin.utils.checkpoint import atomic_write_text


def main(work: str) -> int:
    import deconas_plugin  # noqa: F401  (torchvision shim before basicsr; registers the archs)
    from .runner import call_part
    with open(work + '.in.json', encoding='utf-8') as f:
        job = json.load(f)
    out = call_part(job['fn'], job['context'], job['args'])
    atomic_write_text(work + '.out.json', json.dumps(out, default=str) + '\n')
    return 0 if out['status'] == 'done' else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
