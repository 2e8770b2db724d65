"""Images and masks from what users hold: PIL images, arrays, file paths, URLs and base64 data URIs, with errors
that name the file and the fix."""

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from transformers.image_utils import load_image as load_remote_image

from .input_checks import ICPTInputError


def load_image(image, what="image") -> Image.Image:
    """An RGB PIL image from a PIL image, a numpy array, a file path, an http(s) URL or a base64 data URI
    (`data:image/png;base64,...`); clear errors otherwise. URLs and data URIs go through
    `transformers.image_utils.load_image`, as the backbones' own processors read them."""
    if isinstance(image, str) and image.startswith(("http://", "https://", "data:image/")):
        shown = image if len(image) < 80 else image[:77] + "..."
        try:
            image = load_remote_image(image, timeout=30)
        except Exception as error:  # network errors, bad base64, undecodable bytes: one message for all
            raise ICPTInputError(f"The {what} {shown!r} could not be read as an image ({type(error).__name__}: "
                                 f"{str(error)[:200]}): check the URL or the data URI.") from None
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise ICPTInputError(f"The {what} {str(path)!r} does not exist: check the path.")
        try:
            with Image.open(path) as opened:
                opened.load()
                image = opened.copy()
        except Image.DecompressionBombError as error:
            raise ICPTInputError(
                f"The {what} {str(path)!r} is too large to open safely ({error}); resize it below "
                f"{Image.MAX_IMAGE_PIXELS:,} pixels."
            ) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            raise ICPTInputError(
                f"The {what} {str(path)!r} is not a readable image (corrupt or unsupported format): {error}."
            ) from None
    elif isinstance(image, np.ndarray):
        if image.ndim in (2, 3) and 0 in image.shape[:2]:  # some Pillow releases refuse to build it, others build it
            raise ICPTInputError(f"The {what} is empty ({image.shape[1]}x{image.shape[0]}).")
        try:
            image = Image.fromarray(_to_uint8(image, what))
        except TypeError:
            raise ICPTInputError(
                f"The {what} is an array of shape {image.shape} ({image.dtype}), which is not an image: "
                "give a height x width (x 3 or 4) array."
            ) from None
    elif not isinstance(image, Image.Image):
        raise ICPTInputError(f"The {what} must be a PIL image, numpy array or file path, got {type(image).__name__}.")
    if image.width < 1 or image.height < 1:
        raise ICPTInputError(f"The {what} is empty ({image.width}x{image.height}).")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        image = Image.fromarray(_to_uint8(np.asarray(image), what))
    return image.convert("RGB")


def load_mask(mask, size, label) -> np.ndarray:
    """A boolean `(height, width)` array (True = the concept) at the reference image's size."""
    mask = load_image(mask, f"mask of {label}").convert("L")
    if mask.size != size:
        mask = mask.resize(size, Image.NEAREST)
    return np.asarray(mask) > 0


def background_view(image: Image.Image, mask: np.ndarray) -> Image.Image:
    """The reference with the concept painted out in the mean colour of its surroundings."""
    pixels = np.asarray(image).copy()
    if mask.all():
        return Image.fromarray(np.zeros_like(pixels))
    pixels[mask] = pixels[~mask].mean(axis=0).astype(np.uint8)
    return Image.fromarray(pixels)


def _to_uint8(array: np.ndarray, what: str) -> np.ndarray:
    """Pixel values stretched to 0..255 (an array's range says nothing about its scale); NaN or infinity is refused."""
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind in "fc":
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise ICPTInputError(f"The {what} holds NaN or infinite values ({bad} of {array.size}): it is not an "
                                 "image; check how the array was made.")
    array = array.astype(np.float64)
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 1.0)
    scale = 255.0 / (high - low) if high > low else 0.0
    return ((array - low) * scale).clip(0, 255).astype(np.uint8)
