"""Photos of two concepts for the demonstration scripts."""

import pytest

from helpers.images import random_image


@pytest.fixture
def photos(tmp_path):
    """my_photos/bo/ and my_photos/kiki/ with two photos each, and a query photo."""
    for c, label in enumerate(["bo", "kiki"]):
        (tmp_path / "my_photos" / label).mkdir(parents=True)
        for i in range(2):
            random_image(10 * c + i, size=(40 + 8 * i, 36)).save(tmp_path / "my_photos" / label / f"{i}.png")
    random_image(99).save(tmp_path / "query.png")
    return tmp_path / "my_photos"
