"""Images for the backbone-family tests: three sizes and aspect ratios."""

import numpy as np
from PIL import Image


def _image(height: int, width: int, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


# Three sizes and aspect ratios, so families that tile or resize per image give different patch counts.
IMAGES = [_image(40, 64, 0), _image(64, 24, 1), _image(30, 30, 2)]
