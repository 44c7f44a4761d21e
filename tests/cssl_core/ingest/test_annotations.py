"""Slice labels and masks from annotations/slices.parquet land on the right, geometrically sorted slices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import SimpleITK as sitk

from tests.cssl_core.ingest.conftest import Ingested, run_ingest
from tests.cssl_core.ingest.corpus import series_slices

# File names deliberately disagree with positions: alphabetical order is c, a, e, b, f, d.
NAMES = ["img_c.dcm", "img_a.dcm", "img_e.dcm", "img_b.dcm", "img_f.dcm", "img_d.dcm"]
MASK_ORDER = [3, 0, 5, 1, 4, 2]  # mask_index of position k: the mask file is shuffled too
GGO_AT = {1, 4}
MASS_AT = {2}
UNANNOTATED = 5  # position without any annotation row
NO_MASK = 3  # annotated position whose row has no mask


def _mask_slice(position: int) -> np.ndarray:
    mask = np.zeros((128, 128), dtype=np.uint8)
    mask[10 * position : 10 * position + 6, 20:30] = position + 1
    return mask


@pytest.fixture(scope="module")
def annotated(tmp_path_factory) -> Ingested:
    root = tmp_path_factory.mktemp("annotated") / "cohort"
    series_slices("scan", n=6, step=2.5, root=root, names=NAMES)
    series_slices("other", n=3, step=5.0, root=root)  # an unannotated series beside it
    masks = np.zeros((6, 128, 128), dtype=np.uint8)
    for position, index in enumerate(MASK_ORDER):
        masks[index] = _mask_slice(position)
    (root / "annotations" / "masks").mkdir(parents=True)
    np.save(root / "annotations" / "masks" / "scan.npy", masks)
    rows = [
        {
            "file": f"scan/{NAMES[k]}",
            "has_ggo": k in GGO_AT,
            "has_mass": k in MASS_AT,
            "mask_file": None if k == NO_MASK else "annotations/masks/scan.npy",
            "mask_index": -1 if k == NO_MASK else MASK_ORDER[k],
        }
        for k in range(6)
        if k != UNANNOTATED
    ]
    schema = pa.schema(
        [
            ("file", pa.string()),
            ("has_ggo", pa.bool_()),
            ("has_mass", pa.bool_()),
            ("mask_file", pa.string()),
            ("mask_index", pa.int64()),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / "annotations" / "slices.parquet")
    out = root.parent / "out"
    return Ingested(out, run_ingest(root, out), root)


def test_annotation_files_are_ignored(annotated):
    assert annotated.accounts_for(annotated.root)
    side = annotated.files[annotated.files["path"].str.startswith("annotations/")]
    assert len(side) == 2 and set(side["reason"]) == {"annotation"} and set(side["status"]) == {"ignored"}


def test_labels_follow_geometry_not_file_names(annotated):
    row = annotated.series_of(f"scan/{NAMES[0]}")
    table = annotated.slices[annotated.slices["series_key"] == row.name].set_index("slice_index")
    assert list(table.index) == list(range(6))
    np.testing.assert_allclose(table["z_mm"], [2.5 * k for k in range(6)])
    for k in range(6):
        if k == UNANNOTATED:
            assert table.loc[k, ["has_ggo", "has_mass"]].isna().all()
        else:
            assert table.loc[k, "has_ggo"] == (k in GGO_AT)
            assert table.loc[k, "has_mass"] == (k in MASS_AT)
        assert table.loc[k, "has_mask"] == (k not in (UNANNOTATED, NO_MASK))


def test_volume_itself_is_in_geometric_order(annotated):
    volume = sitk.GetArrayFromImage(annotated.image_of(f"scan/{NAMES[0]}")).astype(int)
    np.testing.assert_array_equal(np.diff(volume, axis=0), np.full((5, 128, 128), 10))


def test_mask_volume_aligned_with_image(annotated):
    row = annotated.series_of(f"scan/{NAMES[0]}")
    assert row["mask_path"] == f"masks/{row.name}.nii.gz"
    image = annotated.image_of(f"scan/{NAMES[0]}")
    mask = sitk.ReadImage(str(annotated.out / row["mask_path"]))
    assert mask.GetPixelIDValue() == sitk.sitkUInt8
    assert mask.GetSize() == image.GetSize()
    np.testing.assert_allclose(mask.GetSpacing(), image.GetSpacing())
    np.testing.assert_allclose(mask.GetOrigin(), image.GetOrigin())
    np.testing.assert_allclose(mask.GetDirection(), image.GetDirection())
    array = sitk.GetArrayFromImage(mask)
    for k in range(6):
        expected = np.zeros((128, 128), np.uint8) if k in (UNANNOTATED, NO_MASK) else _mask_slice(k)
        np.testing.assert_array_equal(array[k], expected)


def test_unannotated_series_has_null_labels_and_no_mask(annotated):
    row = annotated.series_of("other/slice_00.dcm")
    assert pd.isna(row["mask_path"])
    table = annotated.slices[annotated.slices["series_key"] == row.name]
    assert table[["has_ggo", "has_mass"]].isna().all().all()
    assert not table["has_mask"].any()
    assert annotated.summary.n_masks == 1
