"""Export a DeCoNASNet to ONNX (dynamic batch, height and width) and check it with onnxruntime.

The network comes from an option file (-opt: its network_g, weights from path.pretrain_network_g
with path.param_key_g) or from --genotype/--num-blocks/--num-nodes/--num-feat/--scale with
--weights (a BasicSR checkpoint: params_ema if present, else params; --param-key to choose). With no
weights the network is randomly initialised (a warning says so; fine for checking the export).
Without --genotype, a checkpoint's own 'genotype' entry (or its unique layer shapes) is used.

The genotype's Python loops are static for a given genotype, so the TorchScript-based exporter
traces them into a plain graph. After the export, onnxruntime runs the model on a real image
(default: skimage.data.astronaut() downscaled by the scale with MATLAB bicubic, i.e. 256x256 at
x2; or --image, used as the LR input) and on a crop of it with another height and width, and
compares with PyTorch: the tool exits with status 1 if the max abs difference exceeds --tol
(default 1e-4).

onnx and onnxruntime are an optional extra: pip install -r requirements-onnx.txt

Examples:
    python tools/export_onnx.py -opt options/test/test_DeCoNASNet_x2.yml -o results/deconas_x2.onnx
    python tools/export_onnx.py --genotype "7 6 4 3 0 2 2 3 4 1" --scale 2 \\
        --weights experiments/train_DeCoNASNet_x2/models/net_g_latest.pth -o results/deconas_x2.onnx
"""
import argparse
import importlib.util
import io
import os.path as osp
import sys
import warnings

if __package__ in (None, ''):  # run as a script: make the project importable
    sys.path.insert(0, osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))

MIN_OPSET = 17
INSTALL_HINT = 'pip install -r requirements-onnx.txt (or: pip install onnx onnxruntime)'


class ExportError(Exception):
    """A user error of the export tool: the message says what is wrong."""


def parse_args(argv=None):
    summary, _, details = __doc__.partition('\n')  # -h: what the tool is for, the arguments, the details
    parser = argparse.ArgumentParser(description=summary, epilog=details,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', '--opt', help='BasicSR option file (network_g, path.pretrain_network_g)')
    parser.add_argument('--genotype', help='genotype string (without -opt)')
    parser.add_argument('--num-blocks', type=int, default=4, help='N (default: 4)')
    parser.add_argument('--num-nodes', type=int, default=None, help='M (default: from the genotype)')
    parser.add_argument('--num-feat', type=int, default=64, help='C (default: 64)')
    parser.add_argument('--scale', type=int, default=2, choices=(2, 3, 4), help='upscale (default: 2)')
    parser.add_argument('--weights', help='BasicSR net checkpoint (overrides path.pretrain_network_g)')
    parser.add_argument('--param-key', help='checkpoint entry with the weights (default: params_ema, else params)')
    parser.add_argument('-o', '--output', default=None, help='output .onnx (default: results/onnx/<name>.onnx)')
    parser.add_argument('--opset', type=int, default=MIN_OPSET, help=f'ONNX opset, >= {MIN_OPSET} (default: 17)')
    parser.add_argument('--image', help='LR test image (default: astronaut downscaled by the scale)')
    parser.add_argument('--max-size', type=int, default=256,
                        help='centre-crop the test image to at most this height and width (default: 256)')
    parser.add_argument('--tol', type=float, default=1e-4, help='max abs difference allowed (default: 1e-4)')
    args = parser.parse_args(argv)
    if args.opt and args.genotype:
        parser.error('give either -opt or --genotype, not both')
    if not args.opt and not args.genotype and not args.weights:
        parser.error('give -opt, --genotype, or --weights of a checkpoint that holds its genotype')
    if args.opset < MIN_OPSET:
        parser.error(f'--opset must be >= {MIN_OPSET}, got {args.opset}')
    if args.max_size < 8:
        parser.error(f'--max-size must be >= 8, got {args.max_size}')
    if args.output and not args.output.endswith('.onnx'):
        parser.error(f'--output must end in .onnx, got {args.output!r}')
    return args


def check_onnx_installed():
    missing = [m for m in ('onnx', 'onnxruntime') if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(f'{" and ".join(missing)} not installed; ONNX export is an optional extra: {INSTALL_HINT}')


# ---------------------------------------------------------------------------------------- model
def build_model(args):
    """(DeCoNASNet in eval mode, name, description of its weights) from the parsed arguments."""
    from deconas_plugin.archs.deconas_arch import DeCoNASNet
    from deconas_plugin.genotype import Genotype, GenotypeError
    from deconas_plugin.genotype_source import (GenotypeSourceError, checkpoint_state_dict, genotype_from_checkpoint,
                                                genotype_from_option, load_checkpoint)
    from deconas_plugin.utils.option_file import read_option_file

    try:
        if args.opt:
            _, net = genotype_from_option(args.opt)
            opt = read_option_file(args.opt, GenotypeSourceError)
            kwargs = {k: v for k, v in net.items() if k != 'type'}
            path_opt = opt.get('path') or {}
            weights = args.weights or path_opt.get('pretrain_network_g')
            param_key = args.param_key or (path_opt.get('param_key_g') if not args.weights else None)
            name = str(opt.get('name') or osp.splitext(osp.basename(args.opt))[0])
        else:
            weights, param_key = args.weights, args.param_key
            genotype = args.genotype
            if genotype is None:
                genotype, source = genotype_from_checkpoint(weights)
                print(f'genotype {genotype} from {source}')
            g = Genotype.parse(genotype, num_nodes=args.num_nodes, num_blocks=args.num_blocks)
            kwargs = dict(genotype=g.to_string(), num_feat=args.num_feat, num_blocks=args.num_blocks,
                          num_nodes=g.num_nodes, upscale=args.scale)
            name = f'DeCoNASNet_x{args.scale}'
        model = DeCoNASNet(**kwargs)
    except (GenotypeError, GenotypeSourceError) as e:
        raise ExportError(str(e)) from None
    except (TypeError, ValueError) as e:
        raise ExportError(f'cannot build DeCoNASNet with {kwargs}: {e}') from None

    if weights and args.opt and not args.weights and not osp.isfile(weights):
        raise ExportError(f'path.pretrain_network_g of {args.opt} not found: {weights} (pass --weights, or set it '
                          'to ~ to export a randomly initialised network)')
    if weights:
        try:
            sd, key = checkpoint_state_dict(load_checkpoint(weights), param_key)
            model.load_state_dict(sd, strict=True)
        except GenotypeSourceError as e:
            raise ExportError(str(e)) from None
        except RuntimeError as e:  # missing, unexpected or wrongly shaped tensors: torch names them
            why = ' '.join(str(e).split())[:400]
            raise ExportError(f'the weights in {weights} ({key}) do not fit this DeCoNASNet (genotype '
                              f'{model.genotype}; check the genotype and num_feat/num_blocks/num_nodes/scale): {why}'
                              ) from None
        source = f'{weights} [{key}]'
    else:
        print('warning: no weights given: exporting a randomly initialised network (fine for checking the export, '
              'not for inference)', file=sys.stderr)
        source = 'random init'
    return model.eval(), name, source


def load_test_image(path, scale, max_size):
    """LR test image as a float32 array (H, W, 3) in [0, 1]."""
    import numpy as np
    if path:
        from PIL import Image
        try:
            with Image.open(path) as im:
                img = np.asarray(im.convert('RGB'), dtype=np.float32) / 255.0
        except (OSError, ValueError) as e:
            raise ExportError(f'cannot read image {path}: {e}') from None
    else:
        from basicsr.utils.matlab_functions import imresize
        from skimage import data
        hr = data.astronaut().astype(np.float32) / 255.0
        img = np.clip(imresize(hr, 1 / scale), 0, 1).astype(np.float32)
    h, w = img.shape[:2]
    top, left = max(0, (h - max_size) // 2), max(0, (w - max_size) // 2)
    return np.ascontiguousarray(img[top:top + max_size, left:left + max_size])


# --------------------------------------------------------------------------------------- export
def export(model, path, opset=MIN_OPSET, example_hw=(32, 32)):
    """Export ``model`` to ``path`` (checked with onnx.checker in memory, then written atomically).

    Input ``lr`` (B, C, h, w) and output ``sr`` (B, C, H, W) have dynamic batch, height and width.
    """
    import onnx
    import torch

    from deconas_plugin.utils.checkpoint import atomic_open
    dummy = torch.rand(1, model.sfe1.in_channels, *example_hw)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the torch.export one (which needs
        # onnxscript); it traces the static per-genotype loops exactly, so it is used here.
        warnings.filterwarnings('ignore', category=DeprecationWarning)
        warnings.filterwarnings('ignore', message='.*legacy TorchScript-based ONNX export.*')
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        with torch.no_grad():
            torch.onnx.export(model, (dummy, ), buffer, dynamo=False, opset_version=opset, input_names=['lr'],
                              output_names=['sr'], do_constant_folding=True,
                              dynamic_axes={'lr': {0: 'batch', 2: 'height', 3: 'width'},
                                            'sr': {0: 'batch', 2: 'out_height', 3: 'out_width'}})
    onnx.checker.check_model(onnx.load_from_string(buffer.getvalue()))
    with atomic_open(path, suffix='.onnx') as f:
        f.write(buffer.getvalue())
    return path


def compare(model, onnx_path, images):
    """Max abs difference between onnxruntime and PyTorch on each (1, C, h, w) array of ``images``.

    Returns a list of (shape of the input, shape of the output, max abs difference).
    """
    import numpy as np
    import onnxruntime as ort
    import torch

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(onnx_path, opts, providers=['CPUExecutionProvider'])
    out = []
    for x in images:
        x = np.ascontiguousarray(x, dtype=np.float32)
        y_ort = session.run(['sr'], {'lr': x})[0]
        with torch.no_grad():
            y_pt = model(torch.from_numpy(x)).numpy()
        if y_ort.shape != y_pt.shape:
            raise ExportError(f'onnxruntime output shape {y_ort.shape} != PyTorch {y_pt.shape} for input {x.shape}')
        out.append((tuple(x.shape), tuple(y_ort.shape), float(np.abs(y_ort - y_pt).max())))
    return out


def check_inputs(img, in_ch=3):
    """The image as (1, in_ch, h, w), and a crop of it with a different (odd) height and width."""
    import numpy as np
    x = np.transpose(img, (2, 0, 1))[None]
    if in_ch != 3:  # a gray model gets the image's mean channel, repeated if needed
        x = np.repeat(x.mean(1, keepdims=True), in_ch, axis=1)
    h, w = x.shape[2:]
    h2, w2 = max(5, h - 7 if h > 12 else h - 1), max(5, w - 13 if w > 18 else w - 2)
    return [x, x[:, :, :h2, :w2]]


def main(argv=None):
    args = parse_args(argv)
    model, name, source = build_model(args)  # option file and weights first: they need no extra
    check_onnx_installed()
    output = args.output or osp.join('results', 'onnx', f'{name}.onnx')
    img = load_test_image(args.image, model.upscale, args.max_size)
    try:
        export(model, output, args.opset)
    except OSError as e:
        raise ExportError(f'cannot write {output}: {e}') from None
    results = compare(model, output, check_inputs(img, model.sfe1.in_channels))
    print(f'exported {name} (genotype {model.genotype}, x{model.upscale}, weights: {source}) to {output} '
          f'(opset {args.opset}, dynamic batch/height/width)')
    worst = 0.0
    for shape_in, shape_out, diff in results:
        print(f'  input {shape_in} -> output {shape_out}: max |onnxruntime - PyTorch| = {diff:.3e}')
        worst = max(worst, diff)
    if worst > args.tol:
        print(f'FAIL: max abs difference {worst:.3e} > tolerance {args.tol:g}', file=sys.stderr)
        return 1
    print(f'OK: max abs difference {worst:.3e} <= {args.tol:g}')
    return 0


if __name__ == '__main__':
    from deconas_plugin.utils.cli import run_tool
    run_tool(main, ExportError)
