import numpy as np
import pytest
import torch
from monai.transforms import ScaleIntensityRange

from cssl_core.windowing import ApplyWindow, ApplyWindowd, Window, quantise, stored_range, to_unit, window_unit

LUNG = Window("lung", 1500, -600)
MEDIASTINAL = Window("mediastinal", 350, 40)


def monai_window(hu: np.ndarray, window: Window) -> np.ndarray:
    transform = ScaleIntensityRange(a_min=window.low, a_max=window.high, b_min=0.0, b_max=1.0, clip=True)
    return np.asarray(transform(torch.as_tensor(hu, dtype=torch.float32)))


@pytest.mark.parametrize("window", [LUNG, MEDIASTINAL, Window("bone", 2000, 300)])
def test_float_window_matches_monai(window):
    rng = np.random.default_rng(0)
    hu = rng.integers(-2048, 3072, size=(4, 64, 64)).astype(np.int16)
    ours = window_unit(hu, window)
    reference = monai_window(hu, window)
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    assert ours.min() >= 0.0 and ours.max() <= 1.0


@pytest.mark.parametrize("window", [LUNG, MEDIASTINAL])
def test_uint8_is_monai_then_quantisation(window):
    hu = np.arange(-1500, 1500, dtype=np.int16).reshape(30, 100)
    ours = ApplyWindow(window, "uint8")(hu)
    reference = np.floor(monai_window(hu, window) * 255.0 + 0.5).astype(np.uint8)
    assert ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, reference)
    # 256 grey levels over the window width: every level is used once the window is fully sampled
    assert np.unique(ours).size == 256


def test_each_window_erases_what_the_other_shows():
    ground_glass = np.array([-700, -500, -350], dtype=np.int16)
    enhancing = np.array([150, 180, 210], dtype=np.int16)
    assert set(ApplyWindow(MEDIASTINAL)(ground_glass)) == {0}
    assert set(ApplyWindow(LUNG)(enhancing)) == {255}
    assert len(set(ApplyWindow(LUNG)(ground_glass))) == 3
    assert len(set(ApplyWindow(MEDIASTINAL)(enhancing))) == 3


def test_float16_option_and_ranges():
    hu = np.linspace(-2000, 2000, 101)
    stored = quantise(window_unit(hu, LUNG), "float16")
    assert stored.dtype == np.float16
    low, high = stored_range("float16")
    assert stored.min() == low and stored.max() == high
    with pytest.raises(ValueError, match="dtype"):
        quantise(stored, "int32")


def test_dict_transform_touches_only_its_keys():
    data = {"image": np.full((2, 2), -600, dtype=np.int16), "label": 3}
    out = ApplyWindowd(["image"], LUNG)(data)
    assert out["label"] == 3 and out["image"].dtype == np.uint8
    assert data["image"].dtype == np.int16


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(KeyError, match="lung"):
        Window.from_preset("soft", {"lung": {"width": 1500, "level": -600}})
    with pytest.raises(ValueError, match="width"):
        Window("broken", 0, 0)


GREYS = np.arange(256, dtype=np.uint8)


def test_to_unit_divides_grey_levels_by_255_in_numpy_and_torch():
    unit = to_unit(GREYS)
    assert unit.dtype == np.float32
    assert np.array_equal(unit, GREYS.astype(np.float32) / np.float32(255))
    assert unit[0] == 0.0 and unit[255] == 1.0
    assert np.array_equal(quantise(unit), GREYS)  # the inverse of the window stage's quantisation
    tensor = to_unit(torch.from_numpy(GREYS))
    assert tensor.dtype == torch.float32 and np.array_equal(tensor.numpy(), unit)


def test_to_unit_reciprocal_is_the_dataset_arithmetic_and_differs_in_the_last_bit():
    product = to_unit(GREYS, reciprocal=True)
    assert np.array_equal(product, GREYS.astype(np.float32) * np.float32(1.0 / 255.0))
    assert np.array_equal(product, np.asarray(GREYS, dtype=np.float32) * (1.0 / 255.0))  # the dataset's old form
    assert np.array_equal(to_unit(torch.from_numpy(GREYS), reciprocal=True).numpy(), product)
    assert int((product != to_unit(GREYS)).sum()) == 126  # why the two readers are kept apart (see to_unit)
    np.testing.assert_allclose(product, to_unit(GREYS), rtol=1e-7, atol=0)


def test_to_unit_copies_float_slices_and_refuses_other_dtypes(tmp_path):
    path = tmp_path / "slices.npy"
    np.save(path, np.linspace(0, 1, 12, dtype=np.float16).reshape(3, 2, 2))
    stored = np.load(path, mmap_mode="r")
    unit = to_unit(stored[0])
    assert unit.dtype == np.float32 and unit.flags.writeable and not np.shares_memory(unit, stored)
    assert np.array_equal(unit, stored[0].astype(np.float32))
    same = torch.rand(2, 3)
    assert to_unit(same) is same  # a float32 tensor is already model input
    with pytest.raises(ValueError, match="uint8"):
        to_unit(np.zeros((1, 2, 2), dtype=np.int16))
    with pytest.raises(ValueError, match="uint8"):
        to_unit(torch.zeros(1, 2, 2, dtype=torch.int32))
