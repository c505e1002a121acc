"""What ``train.py`` and ``test.py`` change in basicsr before running its pipelines (``patch_basicsr``)."""
from basicsr.data.paired_image_dataset import PairedImageDataset

from . import exact_resume
from .dist_launch import init_dist


def _name_unreadable_pairs():
    """Make PairedImageDataset name the files of a pair it cannot load (corrupt or truncated)."""
    if getattr(PairedImageDataset.__getitem__, 'names_pairs', False):
        return
    original = PairedImageDataset.__getitem__

    def __getitem__(self, index):
        if isinstance(index, int) and index >= len(self.paths):
            raise IndexError(index)  # the end of iteration (``for item in dataset``), not a bad file
        try:
            return original(self, index)
        except Exception as e:  # noqa: BLE001  (re-raised with the file names)
            pair = self.paths[index % len(self.paths)]
            raise RuntimeError(f"cannot load the pair {pair['gt_path']} / {pair['lq_path']}: {e!r}; "
                               'a corrupt or truncated image? Replace it or remake the data') from e

    __getitem__.names_pairs = True
    PairedImageDataset.__getitem__ = __getitem__


def patch_basicsr():
    """Install the CPU-safe, exact resume (``exact_resume``), the distributed set-up (``dist_launch``) and
    the named unreadable pairs into basicsr (idempotent)."""
    import basicsr.utils.options
    exact_resume.install()
    basicsr.utils.options.init_dist = init_dist
    _name_unreadable_pairs()
