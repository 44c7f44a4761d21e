import numpy as np

from cssl_core.resample import AIR_HU, pad_to_square, resize_hu, resize_mask


def test_pad_keeps_content_centred_with_air():
    stack = np.zeros((1, 4, 8), dtype=np.float32)
    square = pad_to_square(stack, AIR_HU)
    assert square.shape == (1, 8, 8)
    assert (square[0, :2] == AIR_HU).all() and (square[0, 2:6] == 0).all()


def test_resize_preserves_mean_of_smooth_image():
    yy, xx = np.mgrid[0:128, 0:128]
    image = (np.sin(xx / 20.0) * 100 + yy).astype(np.float32)[None]
    out = resize_hu(image, 64)
    assert out.shape == (1, 64, 64)
    assert abs(out.mean() - image.mean()) < 1.0


def test_antialiasing_suppresses_checkerboard():
    checker = ((np.indices((128, 128)).sum(0) % 2) * 2000 - 1000).astype(np.float32)[None]
    out = resize_hu(checker, 32)
    assert out.std() < 50  # without antialiasing the pattern aliases into +-1000 stripes


def test_mask_resize_keeps_small_lesion_and_class():
    mask = np.zeros((1, 128, 128), dtype=np.uint8)
    mask[0, 60:64, 60:64] = 2  # 4x4 px lesion -> 2x2 px at half size
    mask[0, 10:30, 10:30] = 1
    out = resize_mask(mask, 64)
    assert (out == 2).sum() == 4
    assert (out == 1).sum() == 100
    assert set(np.unique(out)) == {0, 1, 2}
