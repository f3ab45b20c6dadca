"""The JPEG quantisation constraint: reading files, the projection, and runs that use it."""

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from napari_dip_l0 import DipL0Run
from napari_dip_l0.core.jpeg import read_jpeg_constraint


def _save(tmp_path, img, name, **kwargs):
    path = tmp_path / name
    Image.fromarray(img).save(path, quality=10, **kwargs)
    return path


def _tensor(img):
    arr = img[..., None] if img.ndim == 2 else img
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), np.float64) / 255)[None]


@pytest.mark.parametrize("subsampling, factors", [(0, (1, 1)), (1, (1, 2)), (2, (2, 2))])
@pytest.mark.parametrize("shape", [(48, 64), (37, 53)])  # whole MCUs, and sides that are not multiples of 8 or 16
def test_colour_files_original_inside_decoded_outside_projected_inside(tmp_path, subsampling, factors, shape):
    original = data.astronaut()[100 : 100 + shape[0], 120 : 120 + shape[1]]
    path = _save(tmp_path, original, "q10.jpg", subsampling=subsampling)
    qcs = read_jpeg_constraint(path)
    assert qcs.shape == shape and qcs.channels == 3 and qcs.factors == [(1, 1), factors, factors]
    decoded = np.asarray(Image.open(path).convert("RGB"))
    # The true image is inside the box (up to the encoder's integer colour conversion) ...
    assert qcs.violation(_tensor(original)).max() < 0.03
    # ... the decoded one need not be (decoders clip to 0-255), and projection puts it back.
    projected = qcs.project(_tensor(decoded))
    assert projected.shape == (1, 3, *shape) and 0 <= projected.min() and projected.max() <= 1
    assert qcs.violation(projected).max() < 0.06
    assert qcs.violation(projected).max() <= qcs.violation(_tensor(decoded)).max()
    np.testing.assert_allclose(qcs.project(projected), projected, atol=2e-3)  # nearly idempotent


def test_greyscale_and_progressive_files(tmp_path):
    grey = data.camera()[:50, :70]
    qcs = read_jpeg_constraint(_save(tmp_path, grey, "grey.jpg"))
    assert qcs.channels == 1 and qcs.shape == (50, 70)
    assert qcs.violation(_tensor(grey)).max() < 0.03
    prog = read_jpeg_constraint(_save(tmp_path, data.astronaut()[:64, :64], "prog.jpg", progressive=True))
    assert prog.channels == 3 and prog.shape == (64, 64)


def test_unsupported_files_are_refused_in_one_line(tmp_path):
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(data.astronaut()[:32, :32]).convert("CMYK").save(cmyk, quality=50)
    with pytest.raises(ValueError, match="colour space"):
        read_jpeg_constraint(cmyk)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    with pytest.raises(ValueError, match="cannot read"):
        read_jpeg_constraint(broken)
    with pytest.raises(FileNotFoundError):
        read_jpeg_constraint(tmp_path / "missing.jpg")


def test_run_with_the_file_is_consistent_with_it(tmp_path):
    original = data.astronaut()[80:128, 100:164]
    path = _save(tmp_path, original, "q10.jpg", subsampling=2)
    decoded = np.asarray(Image.open(path).convert("RGB"))
    run = DipL0Run(decoded, "deblock", iterations=6, channel_axis=-1, jpeg=path)
    assert run.tile_size >= 64
    result = run.run()
    assert result.dtype == np.uint8 and result.shape == decoded.shape
    # Re-encoding the estimate finds every coefficient inside its interval (up to rounding to 8 bits).
    assert read_jpeg_constraint(path).violation(_tensor(result)).max() < 0.06


def test_run_refuses_an_image_that_is_not_the_files(tmp_path):
    path = _save(tmp_path, data.astronaut()[:48, :64], "q10.jpg")
    decoded = np.asarray(Image.open(path).convert("RGB"))
    with pytest.raises(ValueError, match="48×64"):
        DipL0Run(decoded[:40], "deblock", channel_axis=-1, jpeg=path)
    with pytest.raises(ValueError, match="channel_axis"):
        DipL0Run(decoded, "deblock", jpeg=path)
    with pytest.raises(ValueError, match="data_range"):
        DipL0Run(decoded, "deblock", channel_axis=-1, jpeg=path, data_range=(0, 1))
