"""A generated personalization world: identities with fine-grained attributes, rendered in varied environments.

No pretrained vision encoder is available offline, so ICPT's embedded default backbone is trained
(and ICPT is evaluated) on this world. Everything is deterministic from a seed and uses only numpy
and PIL (plus scikit-image's bundled photos as backgrounds).

* An **identity** is a small object defined by seven attributes: body shape, body colour, a second
  colour, the pattern drawn in that colour, a marking (dot, bar or triangle) and the side it sits
  on (left / right / top / bottom), and an accessory. Each identity has a text description, e.g.
  "a red circle with blue stripes, a dot on the left and a hat".
* **Look-alike pairs** are identities that differ in exactly one detail (pattern, second colour,
  marking, marking side or accessory): the hard negatives.
* An **environment** is a background source (a real photo, or a family of procedural textures)
  with its own lighting. Each render also draws a random crop, lighting, pose (scale, rotation,
  squash), position, partial occlusion and distractor objects.
* **Splits**, fixed by the seed: training vs held-out identities (look-alike pairs stay together),
  and environment set ``"A"`` vs the disjoint set ``"B"`` (used only for the environment-shift test).

Example:

```python
>>> import numpy as np
>>> from icpt.world.world import World
>>> world = World(seed=0, num_identities=200)
>>> world.identities[0].description  # doctest: +SKIP
'a green hexagon with white checks, a triangle on the top and ears'
>>> env = world.environment_set("A")[0]
>>> image, masks = world.render([0, 1], env, np.random.default_rng(0))
>>> image.size, sorted(masks)
((64, 64), [0, 1])
```
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage import data as skimage_photos

try:  # scikit-learn is not a dependency: its two sample photos join the backgrounds when it is installed
    from sklearn.datasets import load_sample_image
except ImportError:
    load_sample_image = None

# ---------------------------------------------------------------------------------------------
# Attribute values. Colours are far apart so that lighting jitter never turns one into another.
# ---------------------------------------------------------------------------------------------
COLOURS = {
    "red": (215, 35, 35),
    "orange": (245, 135, 15),
    "yellow": (240, 220, 30),
    "green": (35, 160, 55),
    "cyan": (40, 200, 215),
    "blue": (35, 70, 215),
    "purple": (135, 55, 185),
    "pink": (245, 140, 200),
    "white": (240, 240, 240),
    "black": (25, 25, 25),
}
SHAPES = ("circle", "oval", "square", "triangle", "diamond", "pentagon", "hexagon")
PATTERNS = ("stripes", "dots", "checks", "lower half", "centre", "outline")
MARKS = ("dot", "bar", "triangle")
SIDES = ("left", "right", "top", "bottom")
ACCESSORIES = ("none", "hat", "antenna", "ears", "legs", "tail", "bow")
ATTRIBUTES = ("shape", "colour", "colour2", "pattern", "mark", "side", "accessory")
# every value each attribute can take
ATTRIBUTE_VALUES = {
    "shape": SHAPES,
    "colour": tuple(COLOURS),
    "colour2": tuple(COLOURS),
    "pattern": PATTERNS,
    "mark": MARKS,
    "side": SIDES,
    "accessory": ACCESSORIES,
}
# The details a look-alike may change: fine details, never the whole body.
LOOK_ALIKE_DETAILS = ("colour2", "pattern", "mark", "side", "accessory")

ENVIRONMENT_SETS = ("A", "B")

# Canonical sprite geometry: a CANVAS x CANVAS RGBA image, body of radius BODY_RADIUS in the middle,
# accessories around it. Drawn at SUPERSAMPLE x resolution, then box-filtered for smooth edges.
CANVAS = 96
BODY_RADIUS = 26.0
SUPERSAMPLE = 2
# A pixel belongs to an object's mask where the object covers at least this much of it; thin lines
# of small accessories stay in the mask.
MASK_ALPHA = 0.35


def with_article(phrase: str) -> str:
    """``"a hat"``, ``"an oval"``."""
    return f"an {phrase}" if phrase[0] in "aeiou" else f"a {phrase}"


@dataclasses.dataclass(frozen=True)
class Identity:
    """One object of the world, defined by its attributes.

    Example:

    ```python
    >>> Identity(0, "circle", "red", "blue", "stripes", "dot", "left", "hat").description
    'a red circle with blue stripes, a dot on the left and a hat'
    ```
    """

    id: int
    shape: str
    colour: str
    colour2: str
    pattern: str
    mark: str
    side: str
    accessory: str

    @property
    def attributes(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in ATTRIBUTES}

    @property
    def pattern_text(self) -> str:
        """The pattern in words, e.g. "blue stripes" or "a blue lower half"."""
        if self.pattern in ("stripes", "dots", "checks"):
            return f"{self.colour2} {self.pattern}"
        return with_article(f"{self.colour2} {self.pattern}")

    @property
    def accessory_text(self) -> str:
        """The accessory in words, e.g. "a hat", "legs" or "nothing"."""
        if self.accessory == "none":
            return "nothing"
        if self.accessory in ("ears", "legs"):
            return self.accessory
        return with_article(self.accessory)

    @property
    def description(self) -> str:
        mark = f"{with_article(self.mark)} on the {self.side}"
        text = f"{with_article(self.colour)} {self.shape} with {self.pattern_text}"
        if self.accessory == "none":
            return f"{text} and {mark}"
        return f"{text}, {mark} and {self.accessory_text}"


@dataclasses.dataclass(frozen=True)
class Environment:
    """A background source with its own lighting. ``kind`` is "photo" or "texture"."""

    name: str
    kind: str
    set: str  # "A" or "B"
    brightness: float
    tint: tuple[float, float, float]
    palette: tuple[tuple[int, int, int], ...]  # texture colours, or the colour a grey photo is tinted with


# ---------------------------------------------------------------------------------------------
# Backgrounds
# ---------------------------------------------------------------------------------------------
# scikit-image photos that ship inside the wheel (others need a download and are left out).
COLOUR_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "motorcycle",
)
GREY_PHOTOS = ("camera", "coins", "moon", "page", "text", "grass", "gravel", "brick", "clock", "cell", "phantom")
TEXTURES = ("plain", "noise", "stripes", "checker", "gradient", "dots", "waves")
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
PHOTO_SHORT_SIDE = 192  # photos are pre-resized so that a 64-pixel crop shows a part of the scene


def _load_skimage_photo(name: str) -> np.ndarray:
    if name == "motorcycle":
        return skimage_photos.stereo_motorcycle()[0]
    if name == "phantom":
        return (skimage_photos.shepp_logan_phantom() * 255).astype(np.uint8)
    return getattr(skimage_photos, name)()


def _sklearn_photo_names() -> tuple[str, ...]:
    """scikit-learn's sample images, when scikit-learn is installed (it is not a dependency)."""
    return SKLEARN_PHOTOS if load_sample_image is not None else ()


@functools.cache
def _photo(name: str) -> np.ndarray:
    """The photo as uint8 RGB (or grey, 2-D), resized to a short side of PHOTO_SHORT_SIDE."""
    if name in SKLEARN_PHOTOS:
        array = load_sample_image(name)
    else:
        array = _load_skimage_photo(name)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.ndim == 3 and array.shape[2] == 4:
        array = array[..., :3]
    image = Image.fromarray(array)
    scale = PHOTO_SHORT_SIDE / min(image.size)
    image = image.resize((round(image.size[0] * scale), round(image.size[1] * scale)), Image.BILINEAR)
    return np.asarray(image)


def _texture(family: str, palette: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A procedural background, float32 (size, size, 3) in [0, 1]."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    first, second = palette[0], palette[1]
    if family == "plain":
        weight = np.zeros((size, size), np.float32)
    elif family == "noise":
        coarse = rng.random((rng.integers(4, 10), rng.integers(4, 10))).astype(np.float32)
        weight = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC)).clip(0, 1)
    elif family == "stripes":
        angle, period = rng.uniform(0, np.pi), rng.uniform(6, 18)
        weight = (np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period) > 0).astype(np.float32)
    elif family == "checker":
        cell = rng.uniform(6, 16)
        weight = ((np.floor(x / cell) + np.floor(y / cell)) % 2).astype(np.float32)
    elif family == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        ramp = x * np.cos(angle) + y * np.sin(angle)
        weight = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    elif family == "dots":
        weight = np.zeros((size, size), np.float32)
        for _ in range(rng.integers(6, 16)):
            cx, cy, radius = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(2, 6)
            weight[(x - cx) ** 2 + (y - cy) ** 2 < radius**2] = 1.0
    elif family == "waves":
        p1, p2, amplitude = rng.uniform(4, 10), rng.uniform(6, 14), rng.uniform(1, 3)
        weight = 0.5 + 0.5 * np.sin(x / p1 + amplitude * np.sin(y / p2) + rng.uniform(0, 6.3))
    else:
        raise ValueError(f"Unknown texture family {family!r}; expected one of {TEXTURES}.")
    jitter = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    return (first + (second - first) * weight[..., None]) * jitter / 255.0


def _background(environment: Environment, size: int, rng: np.random.Generator) -> np.ndarray:
    if environment.kind == "texture":
        palette = np.asarray(environment.palette, np.float32)
        order = rng.permutation(len(palette))
        return _texture(environment.name.split(":", 1)[1], palette[order], size, rng)
    photo = _photo(environment.name.split(":", 1)[1])
    height, width = photo.shape[:2]
    crop = int(rng.uniform(64, 160))
    top, left = rng.integers(0, height - crop + 1), rng.integers(0, width - crop + 1)
    patch = Image.fromarray(photo[top : top + crop, left : left + crop]).resize((size, size), Image.BILINEAR)
    patch = np.asarray(patch, np.float32) / 255.0
    if patch.ndim == 2:  # a grey photo, tinted with the environment's colour
        tint = np.asarray(environment.palette[0], np.float32) / 255.0
        return patch[..., None] * (0.4 + 0.6 * tint)
    return patch


# ---------------------------------------------------------------------------------------------
# Sprites: one canonical RGBA image per identity, transformed for every render
# ---------------------------------------------------------------------------------------------
def _polygon(sides: int, rotation: float) -> list[tuple[float, float]]:
    return [
        (math.cos(rotation + 2 * math.pi * k / sides), math.sin(rotation + 2 * math.pi * k / sides))
        for k in range(sides)
    ]


# Body outlines in units of the body radius (y points down); None means an ellipse (rx, ry).
_BODY = {
    "circle": ((1.0, 1.0), None),
    "oval": ((1.0, 0.68), None),
    "square": (None, [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)]),
    "triangle": (None, [(0.0, -1.0), (1.0, 0.8), (-1.0, 0.8)]),
    "diamond": (None, [(0.0, -1.05), (1.05, 0.0), (0.0, 1.05), (-1.05, 0.0)]),
    "pentagon": (None, _polygon(5, -math.pi / 2)),
    "hexagon": (None, _polygon(6, 0.0)),
}
# Where the marking sits on each body, in units of the body radius.
_MARK_POSITION = {
    shape: {"left": (-0.45, 0.05), "right": (0.45, 0.05), "top": (0.0, -0.45), "bottom": (0.0, 0.5)}
    for shape in SHAPES
}
_MARK_POSITION["oval"] = {"left": (-0.55, 0.0), "right": (0.55, 0.0), "top": (0.0, -0.34), "bottom": (0.0, 0.34)}
_MARK_POSITION["triangle"] = {"left": (-0.4, 0.42), "right": (0.4, 0.42), "top": (0.0, -0.25), "bottom": (0.0, 0.62)}
# Top and bottom of each body (accessories attach there), in units of the body radius.
_BODY_TOP = {
    "circle": -1.0,
    "oval": -0.68,
    "square": -0.85,
    "triangle": -1.0,
    "diamond": -1.05,
    "pentagon": -1.0,
    "hexagon": -0.87,
}
_BODY_BOTTOM = {
    "circle": 1.0,
    "oval": 0.68,
    "square": 0.85,
    "triangle": 0.8,
    "diamond": 1.05,
    "pentagon": 0.81,
    "hexagon": 0.87,
}
_BODY_RIGHT = {
    "circle": 1.0,
    "oval": 1.0,
    "square": 0.85,
    "triangle": 0.7,
    "diamond": 0.9,
    "pentagon": 0.95,
    "hexagon": 1.0,
}


def _draw_body(draw: ImageDraw.ImageDraw, shape: str, centre: float, radius: float, fill: int) -> None:
    ellipse, points = _BODY[shape]
    if ellipse is not None:
        rx, ry = ellipse
        draw.ellipse(
            [centre - rx * radius, centre - ry * radius, centre + rx * radius, centre + ry * radius], fill=fill
        )
    else:
        draw.polygon([(centre + px * radius, centre + py * radius) for px, py in points], fill=fill)


def _mask_image(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("L", (size, size), 0)
    return image, ImageDraw.Draw(image)


def _sprite(identity: Identity) -> np.ndarray:
    """The identity's canonical RGBA sprite, uint8 (CANVAS, CANVAS, 4), body centred."""
    size, radius = CANVAS * SUPERSAMPLE, BODY_RADIUS * SUPERSAMPLE
    centre = size / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    u, v = (x - centre) / radius, (y - centre) / radius

    body_image, draw = _mask_image(size)
    _draw_body(draw, identity.shape, centre, radius, 255)
    body = np.asarray(body_image) > 0
    if identity.pattern == "stripes":
        pattern = np.floor(v * 2.4 + 100) % 2 == 0
    elif identity.pattern == "dots":
        pattern = ((u % 0.62) - 0.31) ** 2 + ((v % 0.62) - 0.31) ** 2 < 0.15**2
    elif identity.pattern == "checks":
        pattern = (np.floor(u / 0.5) + np.floor(v / 0.5)) % 2 == 0
    elif identity.pattern == "lower half":
        pattern = v > 0.08
    else:  # "centre" (a smaller copy of the body) or "outline" (the body minus a smaller copy)
        inner_image, inner_draw = _mask_image(size)
        _draw_body(inner_draw, identity.shape, centre, radius * (0.5 if identity.pattern == "centre" else 0.72), 255)
        inner = np.asarray(inner_image) > 0
        pattern = inner if identity.pattern == "centre" else ~inner
    colour, colour2 = np.asarray(COLOURS[identity.colour], np.uint8), np.asarray(COLOURS[identity.colour2], np.uint8)
    rgb = np.where((body & pattern)[..., None], colour2, colour)
    alpha = body.astype(np.uint8) * 255
    sprite = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    draw = ImageDraw.Draw(sprite)

    # The marking: white with a black rim, so that it shows on every body colour and pattern.
    mx, my = _MARK_POSITION[identity.shape][identity.side]
    mx, my, r = centre + mx * radius, centre + my * radius, 0.2 * radius
    rim = max(2, round(0.05 * radius))
    if identity.mark == "dot":
        draw.ellipse([mx - r, my - r, mx + r, my + r], fill=(255, 255, 255, 255), outline=(0, 0, 0, 255), width=rim)
    elif identity.mark == "bar":
        draw.rectangle(
            [mx - 1.3 * r, my - 0.55 * r, mx + 1.3 * r, my + 0.55 * r],
            fill=(255, 255, 255, 255),
            outline=(0, 0, 0, 255),
            width=rim,
        )
    else:
        draw.polygon(
            [(mx, my - 1.2 * r), (mx + 1.15 * r, my + 0.9 * r), (mx - 1.15 * r, my + 0.9 * r)],
            fill=(255, 255, 255, 255),
            outline=(0, 0, 0, 255),
            width=rim,
        )

    # The accessory, in the second colour with a dark rim.
    fill, line = (*COLOURS[identity.colour2], 255), (20, 20, 20, 255)
    top, bottom = centre + _BODY_TOP[identity.shape] * radius, centre + _BODY_BOTTOM[identity.shape] * radius
    width = max(3, round(0.12 * radius))
    if identity.accessory == "hat":
        draw.rectangle(
            [centre - 0.6 * radius, top - 0.12 * radius, centre + 0.6 * radius, top + 0.04 * radius],
            fill=fill,
            outline=line,
            width=rim,
        )
        draw.polygon(
            [
                (centre - 0.4 * radius, top - 0.1 * radius),
                (centre + 0.4 * radius, top - 0.1 * radius),
                (centre, top - 0.62 * radius),
            ],
            fill=fill,
            outline=line,
            width=rim,
        )
    elif identity.accessory == "antenna":
        draw.line([(centre, top + 0.05 * radius), (centre, top - 0.45 * radius)], fill=line, width=width)
        draw.ellipse(
            [centre - 0.17 * radius, top - 0.62 * radius, centre + 0.17 * radius, top - 0.3 * radius],
            fill=fill,
            outline=line,
            width=rim,
        )
    elif identity.accessory == "ears":
        for sign in (-1, 1):
            ex = centre + sign * 0.5 * radius
            draw.polygon(
                [
                    (ex - 0.25 * radius, top + 0.2 * radius),
                    (ex + 0.25 * radius, top + 0.2 * radius),
                    (ex + sign * 0.08 * radius, top - 0.42 * radius),
                ],
                fill=fill,
                outline=line,
                width=rim,
            )
    elif identity.accessory == "legs":
        for sign in (-1, 1):
            lx = centre + sign * 0.38 * radius
            draw.line([(lx, bottom - 0.05 * radius), (lx, bottom + 0.42 * radius)], fill=line, width=width)
            draw.ellipse(
                [lx - 0.18 * radius, bottom + 0.32 * radius, lx + 0.18 * radius, bottom + 0.52 * radius],
                fill=fill,
                outline=line,
                width=rim,
            )
    elif identity.accessory == "tail":
        right = centre + _BODY_RIGHT[identity.shape] * radius
        points = [
            (right - 0.1 * radius, centre + 0.25 * radius),
            (right + 0.25 * radius, centre + 0.1 * radius),
            (right + 0.45 * radius, centre - 0.25 * radius),
            (right + 0.4 * radius, centre - 0.5 * radius),
        ]
        draw.line(points, fill=line, width=width + 2 * rim, joint="curve")
        draw.line(points, fill=fill, width=width, joint="curve")
    elif identity.accessory == "bow":
        by = bottom + 0.12 * radius
        draw.polygon(
            [(centre, by), (centre - 0.45 * radius, by - 0.25 * radius), (centre - 0.45 * radius, by + 0.25 * radius)],
            fill=fill,
            outline=line,
            width=rim,
        )
        draw.polygon(
            [(centre, by), (centre + 0.45 * radius, by - 0.25 * radius), (centre + 0.45 * radius, by + 0.25 * radius)],
            fill=fill,
            outline=line,
            width=rim,
        )
    return np.asarray(sprite.resize((CANVAS, CANVAS), Image.BOX))


# ---------------------------------------------------------------------------------------------
# The world
# ---------------------------------------------------------------------------------------------
class World:
    """Identities, environments and their splits, all fixed by ``seed``; renders scenes of them.

    Args:
        seed: fixes identities, look-alike pairs, splits and environments.
        num_identities: how many identities (look-alike twins included).
        image_size: side of the rendered square images, in pixels.
        held_out_fraction: share of identities held out from every kind of training.
        look_alike_fraction: share of identities that belong to a look-alike pair.
        environment_b_fraction: share of each kind of environment put in set "B".
        extra_training_identities: more identities for the training split only, all in look-alike
            pairs, none equal to or one detail away from a held-out identity. The first
            ``num_identities`` identities and their splits are the same as without them, so a model
            trained with extras is evaluated on the held-out split of ``World(seed, num_identities)``.
            With only a few hundred training identities a vision tower can learn to recognise each one
            and recall its small details, rather than see them; thousands of extras leave nothing to recall.

    Example:

    ```python
    >>> world = World(seed=0, num_identities=100)
    >>> len(world.split("train")) + len(world.split("held_out"))
    100
    >>> sorted({env.set for env in world.environments})
    ['A', 'B']
    ```
    """

    def __init__(
        self,
        seed: int = 0,
        num_identities: int = 1000,
        image_size: int = 64,
        held_out_fraction: float = 0.2,
        look_alike_fraction: float = 0.3,
        environment_b_fraction: float = 1 / 3,
        extra_training_identities: int = 0,
    ):
        if num_identities < 10:
            raise ValueError(f"num_identities={num_identities} is too small: use at least 10.")
        if not 0 < held_out_fraction < 1:
            raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}.")
        if not 0 <= look_alike_fraction <= 1:
            raise ValueError(f"look_alike_fraction must be in [0, 1], got {look_alike_fraction}.")
        if extra_training_identities < 0:
            raise ValueError(f"extra_training_identities must be 0 or more, got {extra_training_identities}.")
        if image_size < 32:
            raise ValueError(f"image_size={image_size} is too small to show the markings: use at least 32.")
        self.seed = seed
        self.image_size = image_size
        rng = np.random.default_rng([seed, 0])
        self.identities, self.look_alike_pairs = self._make_identities(num_identities, look_alike_fraction, rng)
        self.look_alike_of = {}
        for a, b in self.look_alike_pairs:
            self.look_alike_of[a], self.look_alike_of[b] = b, a
        # Split by groups, so that a look-alike pair is never split across training and held-out.
        groups = [[a, b] for a, b in self.look_alike_pairs] + [
            [i] for i in range(num_identities) if i not in self.look_alike_of
        ]
        order = rng.permutation(len(groups))
        held_out, target = [], round(held_out_fraction * num_identities)
        for index in order:
            if len(held_out) >= target:
                break
            held_out.extend(groups[index])
        held = set(held_out)
        self._splits = {
            "train": [i for i in range(num_identities) if i not in held],
            "held_out": sorted(held),
        }
        if extra_training_identities:
            self._add_training_identities(extra_training_identities, np.random.default_rng([seed, 4]))
        self.environments = self._make_environments(seed, environment_b_fraction)
        self._environment_by_name = {env.name: env for env in self.environments}
        self._sprites: dict[int, tuple[Image.Image, Image.Image]] = {}

    # -- construction -------------------------------------------------------------------------
    @staticmethod
    def _make_identities(
        count: int,
        look_alike_fraction: float,
        rng: np.random.Generator,
        first_id: int = 0,
        taken: set[tuple[str, ...]] | None = None,
        allowed=lambda key: True,
    ):
        """``count`` new identities (ids from ``first_id``), a ``look_alike_fraction`` of them in
        pairs, none in ``taken`` (attribute tuples) and each one ``allowed(attribute tuple)``."""
        values = ATTRIBUTE_VALUES

        def random_attributes() -> dict[str, str]:
            attributes = {name: str(rng.choice(values[name])) for name in ATTRIBUTES}
            while attributes["colour2"] == attributes["colour"]:
                attributes["colour2"] = str(rng.choice(values["colour2"]))
            return attributes

        seen: set[tuple[str, ...]] = set(taken or ())
        attribute_sets: list[dict[str, str]] = []
        pairs: list[tuple[int, int]] = []
        num_pairs = int(count * look_alike_fraction) // 2
        while len(attribute_sets) < count:
            attributes = random_attributes()
            key = tuple(attributes.values())
            if key in seen or not allowed(key):
                continue
            if len(pairs) < num_pairs:
                detail = str(rng.choice(LOOK_ALIKE_DETAILS))
                twin = dict(attributes)
                choices = [
                    value
                    for value in values[detail]
                    if value != attributes[detail] and not (detail == "colour2" and value == attributes["colour"])
                ]
                twin[detail] = str(rng.choice(choices))
                twin_key = tuple(twin.values())
                if twin_key in seen or not allowed(twin_key):
                    continue
                seen.update([key, twin_key])
                pairs.append((first_id + len(attribute_sets), first_id + len(attribute_sets) + 1))
                attribute_sets.extend([attributes, twin])
            else:
                seen.add(key)
                attribute_sets.append(attributes)
        identities = [Identity(first_id + i, **attributes) for i, attributes in enumerate(attribute_sets)]
        return identities, pairs

    def _add_training_identities(self, count: int, rng: np.random.Generator) -> None:
        """Appends ``count`` identities in look-alike pairs to the training split (see ``__init__``)."""

        def blanked(key: tuple[str, ...]) -> list[tuple[str, ...]]:
            # Two attribute tuples differ in at most one place iff they share one of these.
            return [key[:k] + ("*",) + key[k + 1 :] for k in range(len(key))]

        near_held_out = {
            blank
            for i in self._splits["held_out"]
            for blank in blanked(tuple(self.identities[i].attributes.values()))
        }
        extra, pairs = self._make_identities(
            count,
            1.0,
            rng,
            first_id=len(self.identities),
            taken={tuple(identity.attributes.values()) for identity in self.identities},
            allowed=lambda key: not near_held_out.intersection(blanked(key)),
        )
        self.identities = self.identities + extra
        self.look_alike_pairs = self.look_alike_pairs + pairs
        for a, b in pairs:
            self.look_alike_of[a], self.look_alike_of[b] = b, a
        self._splits["train"] = self._splits["train"] + [identity.id for identity in extra]

    @staticmethod
    def _make_environments(seed: int, b_fraction: float) -> list[Environment]:
        # Each kind is split on its own, so that adding the optional scikit-learn photos leaves the
        # sets of the other environments unchanged.
        kinds = {
            "photo": [f"photo:{name}" for name in COLOUR_PHOTOS + GREY_PHOTOS],
            "texture": [f"texture:{name}" for name in TEXTURES],
            "sklearn": [f"photo:{name}" for name in _sklearn_photo_names()],
        }
        environments = []
        for group_index, (group, names) in enumerate(kinds.items()):
            if not names:
                continue
            rng = np.random.default_rng([seed, 1, group_index])
            order = rng.permutation(len(names))
            num_b = max(1, round(b_fraction * len(names))) if len(names) > 1 else 0
            in_b = {names[i] for i in order[:num_b]}
            for name in names:
                # Per-environment lighting and palette, drawn from the environment's own stream.
                env_rng = np.random.default_rng([seed, 2, sum(name.encode())])
                palette = tuple(tuple(int(c) for c in env_rng.integers(30, 230, 3)) for _ in range(3))
                environments.append(
                    Environment(
                        name=name,
                        kind="texture" if group == "texture" else "photo",
                        set="B" if name in in_b else "A",
                        brightness=float(env_rng.uniform(0.8, 1.15)),
                        tint=tuple(float(t) for t in env_rng.uniform(0.88, 1.12, 3)),
                        palette=palette,
                    )
                )
        return environments

    # -- splits -------------------------------------------------------------------------------
    def split(self, name: str) -> list[int]:
        """Identity ids of split ``"train"`` or ``"held_out"`` (held-out ids are never used in any training)."""
        if name not in self._splits:
            raise ValueError(f"Unknown identity split {name!r}; expected 'train' or 'held_out'.")
        return list(self._splits[name])

    def environment_set(self, name: str) -> list[Environment]:
        """Environments of set ``"A"`` (training) or ``"B"`` (only for the environment-shift test)."""
        if name not in ENVIRONMENT_SETS:
            raise ValueError(f"Unknown environment set {name!r}; expected 'A' or 'B'.")
        return [env for env in self.environments if env.set == name]

    def environment(self, name: str) -> Environment:
        if name not in self._environment_by_name:
            raise ValueError(f"Unknown environment {name!r}; see `World.environments` for the names.")
        return self._environment_by_name[name]

    # -- rendering ----------------------------------------------------------------------------
    def sprite(self, identity_id: int) -> Image.Image:
        """The canonical RGBA image of an identity (upright, centred, no environment)."""
        return self._sprite_levels(identity_id)[0]

    def _sprite_levels(self, identity_id: int) -> tuple[Image.Image, Image.Image]:
        if identity_id not in self._sprites:
            full = Image.fromarray(_sprite(self.identities[identity_id]), "RGBA")
            # A half-size copy avoids aliasing when the sprite is shrunk a lot.
            self._sprites[identity_id] = (full, full.resize((CANVAS // 2, CANVAS // 2), Image.BOX))
        return self._sprites[identity_id]

    def _layout(self, count: int, rng: np.random.Generator) -> list[tuple[float, float, float]]:
        """Centre x, centre y and body diameter (pixels) of ``count`` objects that do not overlap much."""
        size = self.image_size
        if count == 1:
            diameter = rng.uniform(0.4, 0.62) * size
            margin = 0.62 * diameter  # accessories reach about 0.6 diameters above or below the centre
            return [(rng.uniform(margin, size - margin), rng.uniform(margin, size - margin), diameter)]
        columns, rows = (count, 1) if count <= 3 else (2, 2)
        cells = [(c, r) for r in range(rows) for c in range(columns)]
        cell_w, cell_h = size / columns, size / rows
        layout = []
        for column, row in cells[:count]:
            diameter = rng.uniform(0.62, 0.78) * min(cell_w, 0.5 * size if rows == 1 else cell_h)
            jitter_x, jitter_y = (
                max(0.0, (cell_w - diameter) / 2 - 0.06 * size),
                max(0.0, (cell_h - diameter) / 2 - 0.1 * size),
            )
            cx = (column + 0.5) * cell_w + rng.uniform(-jitter_x, jitter_x) * 0.5
            cy = (row + 0.5) * cell_h + rng.uniform(-jitter_y, jitter_y)
            layout.append((cx, cy, diameter))
        return layout

    def _place(self, identity_id: int, cx: float, cy: float, diameter: float, rng: np.random.Generator) -> np.ndarray:
        """The identity's sprite posed into an (H, W, 4) float32 layer (alpha in [0, 1])."""
        full, half = self._sprite_levels(identity_id)
        scale = diameter / (2 * BODY_RADIUS)  # output pixels per canonical pixel
        angle = rng.uniform(-0.5, 0.5)  # radians; small enough that left stays left
        squash = rng.uniform(0.85, 1.15)
        sprite, canvas = (half, CANVAS / 2) if scale < 0.5 else (full, CANVAS)
        level = canvas / CANVAS
        # Output pixel -> sprite pixel: inverse of scale * rotation * squash.
        cos, sin = math.cos(angle), math.sin(angle)
        a, b = cos / (scale * squash), sin / (scale * squash)
        d, e = -sin * squash / scale, cos * squash / scale
        a, b, d, e = a * level, b * level, d * level, e * level
        c = canvas / 2 - a * cx - b * cy
        f = canvas / 2 - d * cx - e * cy
        size = self.image_size
        layer = sprite.transform((size, size), Image.AFFINE, (a, b, c, d, e, f), resample=Image.BILINEAR)
        return np.asarray(layer, np.float32) / 255.0

    @staticmethod
    def _blob(size: int, cx: float, cy: float, radius: float, colour, rng: np.random.Generator) -> np.ndarray:
        """An irregular plain polygon (a distractor or an occluder), as an (H, W, 4) float32 layer."""
        image = Image.new("RGBA", (size * SUPERSAMPLE, size * SUPERSAMPLE), (0, 0, 0, 0))
        count = int(rng.integers(5, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, count))
        radii = radius * rng.uniform(0.45, 1.0, count)
        points = [
            ((cx + r * math.cos(t)) * SUPERSAMPLE, (cy + r * math.sin(t)) * SUPERSAMPLE) for r, t in zip(radii, angles)
        ]
        ImageDraw.Draw(image).polygon(points, fill=(*colour, 255))
        return np.asarray(image.resize((size, size), Image.BOX), np.float32) / 255.0

    def render(
        self,
        identity_ids: Sequence[int],
        environment: Environment | str,
        rng: np.random.Generator | int,
        *,
        num_distractors: int | None = None,
        occlusion: bool | None = None,
    ) -> tuple[Image.Image, dict[int, np.ndarray]]:
        """Render a scene of 0-4 identities in an environment.

        Args:
            identity_ids: the identities in the scene, distinct, at most 4.
            environment: an `Environment` of this world or its name.
            rng: a numpy Generator (or a seed); the same state gives the same pixels.
            num_distractors: plain distractor objects (random 0-2 when None).
            occlusion: whether occluders partly hide the identities (random when None).

        Returns:
            The RGB image and, for each identity, a boolean (H, W) mask of its visible pixels.
        """
        if len(identity_ids) > 4 or len(set(identity_ids)) != len(identity_ids):
            raise ValueError(f"A scene holds 0-4 distinct identities, got {list(identity_ids)}.")
        if isinstance(environment, str):
            environment = self.environment(environment)
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        size = self.image_size
        # Background, lighting and distractors come first from their own streams, so that a
        # scene with the same seed and fewer identities has exactly the same surroundings.
        background_rng, light_rng, distractor_rng, object_rng = (
            np.random.default_rng(s) for s in rng.integers(0, 2**63, 4)
        )
        image = _background(environment, size, background_rng)

        if num_distractors is None:
            num_distractors = int(distractor_rng.choice(3, p=[0.5, 0.35, 0.15]))
        for _ in range(num_distractors):
            colour = tuple(int(c) for c in distractor_rng.integers(0, 256, 3))
            layer = self._blob(
                size,
                distractor_rng.uniform(0, size),
                distractor_rng.uniform(0, size),
                distractor_rng.uniform(0.06, 0.16) * size,
                colour,
                distractor_rng,
            )
            image = image * (1 - layer[..., 3:]) + layer[..., :3] * layer[..., 3:]

        masks: dict[int, np.ndarray] = {}
        layout = self._layout(len(identity_ids), object_rng) if identity_ids else []
        occluded = [bool(object_rng.random() < 0.2) if occlusion is None else occlusion for _ in identity_ids]
        for identity_id, (cx, cy, diameter) in zip(identity_ids, layout):
            layer = self._place(int(identity_id), cx, cy, diameter, object_rng)
            alpha = layer[..., 3:]
            image = image * (1 - alpha) + layer[..., :3] * alpha
            for other in masks.values():
                other &= alpha[..., 0] < MASK_ALPHA
            masks[int(identity_id)] = alpha[..., 0] >= MASK_ALPHA
        for (cx, cy, diameter), hide in zip(layout, occluded):
            if not hide:
                continue
            # An occluder over one edge of the object: it hides at most about a quarter of it.
            angle = object_rng.uniform(0, 2 * np.pi)
            distance = 0.5 * diameter
            colour = tuple(int(c) for c in object_rng.integers(0, 256, 3))
            ox = min(max(cx + distance * math.cos(angle), 0.0), size - 1.0)
            oy = min(max(cy + distance * math.sin(angle), 0.0), size - 1.0)
            layer = self._blob(size, ox, oy, 0.36 * diameter, colour, object_rng)
            alpha = layer[..., 3:]
            image = image * (1 - alpha) + layer[..., :3] * alpha
            for other in masks.values():
                other &= alpha[..., 0] < MASK_ALPHA

        image = self._light(image, environment, light_rng)
        return Image.fromarray((image.clip(0, 1) * 255 + 0.5).astype(np.uint8)), masks

    def _light(self, image: np.ndarray, environment: Environment, rng: np.random.Generator) -> np.ndarray:
        size = self.image_size
        gain = environment.brightness * rng.uniform(0.75, 1.25)
        tint = np.asarray(environment.tint, np.float32) * rng.uniform(0.92, 1.08, 3).astype(np.float32)
        angle, strength = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.35)
        y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
        shading = 1 + strength * (x * math.cos(angle) + y * math.sin(angle))
        gamma = rng.uniform(0.8, 1.25)
        noise = rng.normal(0, rng.uniform(0, 0.025), image.shape).astype(np.float32)
        lit = (image * gain * tint * shading[..., None]).clip(0, 1) ** gamma
        return lit + noise

    def render_array(
        self, identity_ids: Sequence[int], environment: Environment | str, rng: np.random.Generator | int, **kwargs
    ) -> np.ndarray:
        """Like `render`, but only the image, as a uint8 (H, W, 3) array."""
        return np.asarray(self.render(identity_ids, environment, rng, **kwargs)[0])

    def prerender(
        self,
        identity_ids: Sequence[int],
        renders_per_identity: int,
        environment_set: str = "A",
        seed: int = 0,
    ) -> RenderBank:
        """Pre-render single-identity images, e.g. to train on without paying ~1 ms per render per step.

        Example:

        ```python
        >>> world = World(num_identities=20)
        >>> bank = world.prerender(world.split("train")[:3], renders_per_identity=2)
        >>> bank.images.shape
        (3, 2, 64, 64, 3)
        ```
        """
        environments = self.environment_set(environment_set)
        images = np.zeros((len(identity_ids), renders_per_identity, self.image_size, self.image_size, 3), np.uint8)
        environment_index = np.zeros((len(identity_ids), renders_per_identity), np.int16)
        for row, identity_id in enumerate(identity_ids):
            rng = np.random.default_rng([self.seed, 3, seed, int(identity_id)])
            for column in range(renders_per_identity):
                index = int(rng.integers(len(environments)))
                images[row, column] = self.render_array([identity_id], environments[index], rng)
                environment_index[row, column] = self.environments.index(environments[index])
        return RenderBank(np.asarray(identity_ids, np.int64), images, environment_index)


@dataclasses.dataclass
class RenderBank:
    """Pre-rendered single-identity images: ``images[i, r]`` is render r of ``identity_ids[i]``.

    ``environment_index[i, r]`` indexes `World.environments`. Save and load with `save` / `load`.
    """

    identity_ids: np.ndarray  # (N,)
    images: np.ndarray  # (N, R, H, W, 3) uint8
    environment_index: np.ndarray  # (N, R)

    def save(self, path: str) -> None:
        np.savez(path, identity_ids=self.identity_ids, images=self.images, environment_index=self.environment_index)

    @classmethod
    def load(cls, path: str) -> RenderBank:
        with np.load(path) as data:
            return cls(data["identity_ids"], data["images"], data["environment_index"])


def world_for(backbone) -> World:
    """The world a backbone folder was trained on (its parameters are saved beside its weights, in `world.json`)."""
    settings = Path(backbone) / "world.json"
    if not settings.is_file():
        raise FileNotFoundError(f"{settings} is missing: the backbone folder must record the world it was trained on.")
    return World(**json.loads(settings.read_text()))
