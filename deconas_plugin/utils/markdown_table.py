"""One Markdown table, the one way every report, benchmark and tool writes one."""
from typing import Iterable, List, Sequence


def md_table(header: Sequence[str], align: str, rows: Iterable[Sequence]) -> List[str]:
    """The lines of a Markdown table: the ``header`` cells, a column alignment per letter of ``align`` (``l``,
    ``c`` or ``r``), then one line per row of cells."""
    rule = {'l': '---', 'c': ':---:', 'r': '---:'}
    return (['| ' + ' | '.join(header) + ' |', '|' + ''.join(rule[a] + '|' for a in align)]
            + ['| ' + ' | '.join(str(cell) for cell in row) + ' |' for row in rows])
