import numpy as np
import pytest
import torch
from monai.transforms import ScaleIntensityRange

from cssl_core.windowing import ApplyWindow, ApplyWindowd, Window, quantise, stored_range, window_unit

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
