"""Draw a DeCoNAS genotype (its DNB cell, and the GFF choices when it has fusion bits) as a PNG.

Pure matplotlib (Agg canvas, no pyplot state, no graphviz): the layout is computed here.

Cell panel: the block input ``x_0`` and the mix nodes ``x_1..x_M`` in a row; one arc per
(op, input) pair the genotype selects, coloured and labelled by op (conv3x3 blue, sep_conv3x3
green, dil_conv3x3 red), from ``x_j`` to ``x_i``; each node box says what it computes
(mean of its active ops -> ReLU -> channel attention); a node without any active op passes
``x_{i-1}`` on (grey dashed); a node whose output nothing reads (``Genotype.live_nodes``: possible
with local fusion bits) is not built, so it is drawn as a grey box without arcs. Below, the LFF conv1x1 with its inputs (solid: used; dotted grey:
dropped by a local fusion bit) and the local residual ``+ x_0``.

GFF panel (genotypes with fusion bits only): SFENet (``F_-1``, ``F_0``), the N blocks and their
outputs ``F_1..F_N``, and which ``F_d`` enter the GFF concat (solid: used; dotted: dropped).

``draw_genotype(genotype, path)`` writes the PNG atomically (temporary file, then rename) at a
size that depends only on M and N (``figure_pixels``).

Where a genotype comes from (an option file, a checkpoint): ``deconas_plugin/genotype_source.py``.
"""
from typing import Optional, Tuple

from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Circle

from ..genotype import NUM_OPS, OP_NAMES, Genotype
from .figures import DPI, new_figure_of_size, save_figure

OP_COLORS = ('#1f77b4', '#2ca02c', '#d62728')  # conv3x3, sep_conv3x3, dil_conv3x3
OP_SHORT = ('conv', 'sep', 'dil')
NODE_GAP = 2.2  # data units between node centres
BOX_W, BOX_H = 1.6, 1.0
CELL_H = 5.5  # inches of the cell panel
GFF_H = 3.0  # inches of the GFF panel


def _cell_width_units(m: int) -> float:
    return NODE_GAP * (m + 3) + 1.0


def _gff_width_units(n: int) -> float:
    return NODE_GAP * (n + 5) + 1.0


def figure_inches(genotype: Genotype) -> Tuple[float, float]:
    """(width, height) in inches; 1 data unit = 0.5 inch horizontally, rounded up to half inches."""
    units = _cell_width_units(genotype.num_nodes)
    if genotype.has_fusion_bits:
        units = max(units, _gff_width_units(genotype.num_blocks))
    width = max(8.0, -(-units // 1) * 0.5 + 0.5)
    return width, CELL_H + (GFF_H if genotype.has_fusion_bits else 0.0)


def figure_pixels(genotype: Genotype, dpi: int = DPI) -> Tuple[int, int]:
    """(width, height) in pixels of the PNG ``draw_genotype`` writes."""
    w, h = figure_inches(genotype)
    return int(round(w * dpi)), int(round(h * dpi))


def _box(ax, x, y, text, face, w=BOX_W, h=BOX_H, fontsize=9, edge='#333333', weight='normal', sub=None):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle='round,pad=0.04,rounding_size=0.15',
                                facecolor=face, edgecolor=edge, linewidth=1.2, zorder=3))
    if sub is None:
        ax.text(x, y, text, ha='center', va='center', fontsize=fontsize, zorder=4, weight=weight)
    else:  # a large name above a small caption
        ax.text(x, y + h * 0.13, text, ha='center', va='center', fontsize=fontsize + 3, zorder=4, weight=weight)
        ax.text(x, y - h * 0.25, sub, ha='center', va='center', fontsize=fontsize - 1, zorder=4)


def _arrow(ax, a, b, color='#333333', style='-|>', ls='-', lw=1.3, rad=0.0, alpha=1.0, z=2):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle=style, mutation_scale=10, color=color, linestyle=ls,
                                 linewidth=lw, connectionstyle=f'arc3,rad={rad}', alpha=alpha, zorder=z,
                                 shrinkA=0, shrinkB=0))


def _fusion_line(ax, a, b, used):
    if used:
        _arrow(ax, a, b, color='#444444', lw=1.1)
    else:
        _arrow(ax, a, b, color='#aaaaaa', ls=':', lw=1.0, style='-')


def _fusion(ax, x, y, text, sources, used, residual_from, residual_drop, residual_text, out_text):
    """A fusion conv box at (x, y) fed by the features at the x positions ``sources`` (on the row y = 0;
    solid if their index is in ``used``), then ``+`` the residual from the feature at ``residual_from``
    (drawn ``residual_drop`` below the box) and the output arrow. Returns (x of the ``+``, y of the residual)."""
    for j, source in enumerate(sources):
        end = (x - BOX_W / 2 + 0.15 + (BOX_W - 0.3) * j / max(len(sources) - 1, 1), y + BOX_H / 2)
        _fusion_line(ax, (source, -BOX_H / 2), end, j in used)
    _box(ax, x, y, text, '#dbe9f6', fontsize=8.5)
    plus_x = x + NODE_GAP * 0.8
    ax.add_patch(Circle((plus_x, y), 0.28, facecolor='white', edgecolor='#333333', zorder=3))
    ax.text(plus_x, y, '+', ha='center', va='center', fontsize=12, zorder=4)
    _arrow(ax, (x + BOX_W / 2, y), (plus_x - 0.28, y))
    res_y = y - residual_drop
    ax.plot([residual_from, residual_from, plus_x], [-BOX_H / 2, res_y, res_y], color='#777777', ls='--', lw=1.1,
            zorder=1)
    _arrow(ax, (plus_x, res_y), (plus_x, y - 0.28), color='#777777', ls='--', lw=1.1)
    ax.text(residual_from + 0.15, res_y + 0.1, residual_text, fontsize=7.5, color='#555555', va='bottom')
    _arrow(ax, (plus_x + 0.28, y), (plus_x + 1.0, y))
    ax.text(plus_x + 1.05, y, out_text, va='center', fontsize=9)
    return plus_x, res_y


def _draw_cell(ax, g: Genotype):
    m = g.num_nodes
    xs = [NODE_GAP * i for i in range(m + 1)]
    # Edges: one arc per (op, input); arcs of op k peak higher than those of op k-1.
    max_top = 1.0
    live = g.live_nodes()
    for node in live:
        active = [op for op in range(NUM_OPS) if g.op_inputs(node, op)]
        if not active:
            _arrow(ax, (xs[node - 1] + BOX_W / 2, 0), (xs[node] - BOX_W / 2, 0), color='#888888', ls='--')
            ax.text((xs[node - 1] + xs[node]) / 2, -0.1, 'no op', ha='center', va='top', fontsize=6.5,
                    color='#666666')
        for op in active:
            for j in g.op_inputs(node, op):
                off = (op - 1) * 0.3
                a, b = (xs[j] + off, BOX_H / 2), (xs[node] + off, BOX_H / 2)
                rad = -(0.22 + 0.2 * op)  # negative: bend upwards for a left-to-right arc
                _arrow(ax, a, b, color=OP_COLORS[op], rad=rad, lw=1.5)
                dist = xs[node] - xs[j]
                top = BOX_H / 2 + abs(rad) * dist / 2
                max_top = max(max_top, top)
                ax.text((a[0] + b[0]) / 2, top, OP_SHORT[op], ha='center', va='center', fontsize=6.5,
                        color=OP_COLORS[op], zorder=5,
                        bbox=dict(boxstyle='round,pad=0.1', facecolor='white', edgecolor='none', alpha=0.85))
    # Nodes.
    _box(ax, xs[0], 0, 'x$_0$', '#eeeeee', fontsize=8.5, sub='block input')
    for node in range(1, m + 1):
        if node not in live:
            _box(ax, xs[node], 0, f'x$_{{{node}}}$', '#f4f4f4', fontsize=8.5, edge='#aaaaaa',
                 sub='read by nothing: not built')
            continue
        idle = not any(g.op_inputs(node, op) for op in range(NUM_OPS))
        sub = f'ReLU, CA of x$_{{{node - 1}}}$' if idle else 'mean, ReLU, CA'
        _box(ax, xs[node], 0, f'x$_{{{node}}}$', '#fff4d6', fontsize=8.5, sub=sub)
    # Local feature fusion and the local residual.
    plus_x, res_y = _fusion(ax, xs[-1] + NODE_GAP * 1.2, -2.4, 'LFF\nconv1x1', xs, set(g.local_inputs()), xs[0], 1.1,
                            'local residual (+ x$_0$)', 'out')
    # Legend (proxy lines) and key.
    for op in range(NUM_OPS):
        ax.plot([], [], color=OP_COLORS[op], lw=2, label=f'{OP_NAMES[op]} ({OP_SHORT[op]})')
    ax.plot([], [], color='#444444', lw=1.1, label='fusion input (used)')
    if g.has_fusion_bits:
        ax.plot([], [], color='#aaaaaa', lw=1.0, ls=':', label='fusion input (dropped)')
    ax.legend(loc='upper right', fontsize=7.5, frameon=True, framealpha=0.9)
    ax.text(-BOX_W / 2, res_y - 0.55, 'op(ReLU(concat(chosen inputs))) per op; node = CA(ReLU(mean of active ops))',
            fontsize=7.5, color='#555555', va='top')
    return (-BOX_W / 2 - 0.3, max(plus_x + 1.8, xs[-1] + BOX_W)), (res_y - 1.0, max_top + 0.5)


def _draw_gff(ax, g: Genotype):
    n = g.num_blocks
    y = 0.0
    xs = {'in': 0.0, 'f-1': NODE_GAP, 'f0': 2 * NODE_GAP}
    for d in range(1, n + 1):
        xs[d] = NODE_GAP * (d + 2)
    _box(ax, xs['in'], y, 'I$_{LR}$', '#eeeeee')
    _box(ax, xs['f-1'], y, 'conv3x3\nF$_{-1}$', '#eeeeee', fontsize=8.5)
    _box(ax, xs['f0'], y, 'conv3x3\nF$_0$', '#eeeeee', fontsize=8.5)
    _arrow(ax, (xs['in'] + BOX_W / 2, y), (xs['f-1'] - BOX_W / 2, y))
    _arrow(ax, (xs['f-1'] + BOX_W / 2, y), (xs['f0'] - BOX_W / 2, y))
    prev = xs['f0']
    for d in range(1, n + 1):
        _box(ax, xs[d], y, f'DNB {d}\nF$_{{{d}}}$', '#fff4d6', fontsize=8.5)
        _arrow(ax, (prev + BOX_W / 2, y), (xs[d] - BOX_W / 2, y))
        prev = xs[d]
    used, feats = set(g.global_inputs(n)), [xs[d] for d in ['f0', *range(1, n + 1)]]
    plus_x, res_y = _fusion(ax, xs[n] + NODE_GAP * 1.2, -1.9, 'GFF\n1x1 → 3x3', feats, used, xs['f-1'], 0.9,
                            'global residual (+ F$_{-1}$)', 'UPNet')
    ax.text(xs['in'] - BOX_W / 2, y + BOX_H / 2 + 0.35,
            f'global feature fusion: F$_d$ used = {sorted(used)} (bits {" ".join(map(str, g.global_bits))}); '
            'block d > 1 reads conv1x1(concat(F$_0$..F$_{d-1}$))', fontsize=8, va='bottom')
    return (xs['in'] - BOX_W / 2 - 0.3, plus_x + 2.0), (res_y - 0.5, y + BOX_H / 2 + 1.0)


def _fit(ax, xlim, ylim, width_in, height_in):
    """Equal data units in x and y: widen the smaller range around its centre to the axes' aspect."""
    (x0, x1), (y0, y1) = xlim, ylim
    bbox = ax.get_position()
    aspect = (bbox.height * height_in) / (bbox.width * width_in)
    w, h = x1 - x0, y1 - y0
    if h / w < aspect:
        pad = (w * aspect - h) / 2
        y0, y1 = y0 - pad, y1 + pad
    else:
        pad = (h / aspect - w) / 2
        x0, x1 = x0 - pad, x1 + pad
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_axis_off()


def draw_genotype(genotype, path: str, title: Optional[str] = None, dpi: int = DPI) -> str:
    """Draw ``genotype`` (a Genotype or anything ``Genotype.parse`` reads) to the PNG ``path``.

    Returns ``path``. The image is ``figure_pixels(genotype, dpi)`` pixels; the file is written to a
    temporary name in the same folder and renamed, so ``path`` is never half written.
    """
    g = Genotype.parse(genotype)
    width, height = figure_inches(g)
    fig = new_figure_of_size((width, height), dpi)
    head = 0.55 / height  # title band, in figure fractions
    if title is None:
        title = f'DeCoNAS cell  {g.to_string()}   (bits {g.to_string("bits")})'
    fig.text(0.5, 1 - 0.3 / height, title, ha='center', va='center', fontsize=11, weight='bold')
    if g.has_fusion_bits:
        cell_frac = CELL_H / height
        ax_cell = fig.add_axes([0.02, 1 - cell_frac + 0.01, 0.96, cell_frac - head - 0.01])
        ax_gff = fig.add_axes([0.02, 0.02, 0.96, GFF_H / height - 0.04])
        _fit(ax_gff, *_draw_gff(ax_gff, g), width, height)
    else:
        ax_cell = fig.add_axes([0.02, 0.02, 0.96, 1 - head - 0.02])
    _fit(ax_cell, *_draw_cell(ax_cell, g), width, height)
    return save_figure(fig, path, dpi)
