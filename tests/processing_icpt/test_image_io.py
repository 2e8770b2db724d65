"""Images from paths, data URIs and URLs (processing_icpt/image_io.py)."""

import numpy as np
import pytest

from helpers.images import random_image
from processing_icpt import ICPTInputError


def test_images_as_data_uris_and_urls_go_through_transformers_loader(monkeypatch):
    import base64
    import io

    from processing_icpt import image_io, load_image

    photo = random_image(5)
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    assert list(load_image(uri).getdata()) == list(photo.convert("RGB").getdata())
    with pytest.raises(ICPTInputError, match="could not be read as an image.*data URI"):
        load_image("data:image/png;base64,bm90IGFuIGltYWdl")  # "not an image"
    # a URL is fetched by transformers' loader (replaced here: tests never reach the network)
    seen = []
    monkeypatch.setattr(image_io, "load_remote_image", lambda url, timeout=None: seen.append(url) or photo)
    assert load_image("https://example.com/bo.png").size == photo.size and seen == ["https://example.com/bo.png"]


@pytest.mark.parametrize("shape", [(0, 4, 3), (4, 0), (0, 0, 3)])
def test_an_empty_array_is_refused_before_pillow_sees_it(shape):
    """Pillow 10.1 raises its own error on a zero-height array and newer releases build an empty image: the same clear
    error either way."""
    from processing_icpt import load_image

    with pytest.raises(ICPTInputError, match=r"The reference of <bo> is empty \(\d+x\d+\)"):
        load_image(np.zeros(shape, dtype=np.uint8), "reference of <bo>")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_an_array_with_nan_or_infinity_is_refused(bad):
    """A float array with a NaN or an infinity is corrupt: the package's error, not a black image and NumPy warnings."""
    import warnings

    from PIL import Image

    from processing_icpt import load_image

    array = np.random.default_rng(0).random((4, 5, 3))
    array[1, 2, 0] = bad
    with pytest.raises(ICPTInputError, match=r"The reference of <bo> holds NaN or infinite values \(1 of 60\)"):
        load_image(array, "reference of <bo>")
    with pytest.raises(ICPTInputError, match="NaN or infinite"):  # a float ("F") PIL image goes the same way
        load_image(Image.fromarray(np.full((3, 3), bad, dtype=np.float32)))  # mode "F"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a finite float array loads, stretched to 0..255, without warnings
        assert np.asarray(load_image(np.linspace(0, 1, 12).reshape(3, 4))).max() == 255
