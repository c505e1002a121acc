"""BasicSR's SRModel plus the gray-image rule of the evaluation protocol."""
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import MODEL_REGISTRY

from deconas_plugin.utils.y_protocol import gray_visuals, is_single_channel


@MODEL_REGISTRY.register()
class DeCoNASSRModel(SRModel):
    """SRModel whose visuals follow the gray-image rule (see ``deconas_plugin.utils.y_protocol``).

    For a test/validation image whose ground-truth file has a single channel, the GT and the
    output are handed to the metrics as 1-channel tensors (the GT's own values and the luma of
    the output), so ``calculate_psnr/ssim`` with ``test_y_channel: true`` measure them on the
    image's own gray values instead of the BT.601 16..235 Y of a replicated RGB copy.
    Training is unchanged (the check only runs when visuals are requested).
    """

    def feed_data(self, data):
        super().feed_data(data)
        paths = data.get('gt_path')
        if isinstance(paths, str):
            paths = [paths]
        self._gt_paths = list(paths) if paths is not None else []

    def _gt_is_single_channel(self):
        flags = [is_single_channel(p) for p in getattr(self, '_gt_paths', [])]
        if not flags or not any(flags):
            return False
        if not all(flags):
            raise ValueError('A batch mixes single-channel and colour ground-truth images; '
                             'validate with batch size 1 (BasicSR does).')
        return True

    def get_current_visuals(self):
        visuals = super().get_current_visuals()
        if self._gt_is_single_channel():
            visuals = gray_visuals(visuals)
        return visuals
