"""Training data: memory-mapped windowed slices, reproducible augmentation and loaders, patient-level splits."""

from cssl_core.data.augment_options import AugmentOptions
from cssl_core.data.loader import EpochSampler, make_loader, set_epoch
from cssl_core.data.seeding import derive_seed
from cssl_core.data.split import train_val_split
from cssl_core.data.transforms import train_transforms
from cssl_core.data.windowed import WindowedSlices

__all__ = [
    "AugmentOptions",
    "EpochSampler",
    "WindowedSlices",
    "derive_seed",
    "make_loader",
    "set_epoch",
    "train_transforms",
    "train_val_split",
]
