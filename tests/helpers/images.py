"""Small random images, the same for the same seed."""

import numpy as np
from PIL import Image


def random_image(seed: int, size=(40, 32), mode="RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
