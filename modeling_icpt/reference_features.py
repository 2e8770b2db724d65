# Copyright 2026 The ICPT Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Patch features of reference images from the frozen vision encoder of any supported VLM backbone.

ICPT reads the hidden states of the backbone's own vision encoder (after chosen blocks), one tensor of patch
features per reference image. Each family lays out its images differently (square crops, any-resolution tiles,
flattened variable-size patch sequences, split images with a global view, padded crops); this module hides that.
"""

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from contextvars import ContextVar

import torch
from torch import nn
from transformers.models.llava_next.modeling_llava_next import (
    get_anyres_image_grid_shape,
    image_size_to_num_patches,
    unpad_image,
)


SUPPORTED_FAMILIES = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "internvl", "idefics3", "smolvlm")

# the block outputs the tower pass running in this thread or task collects: {block index: hidden states}
CAPTURED_BLOCKS: ContextVar = ContextVar("icpt_captured_blocks", default=None)

# Where each family's top-level model keeps its vision encoder.
_VISION_TOWER_NAMES = ("vision_tower", "visual", "vision_model")


def backbone_family(vlm_config) -> str:
    """The family (transformers `model_type`) of a backbone config, checked against the supported families.

    Example:

    ```python
    >>> from transformers import LlavaConfig
    >>> backbone_family(LlavaConfig())
    'llava'
    ```
    """
    model_type = getattr(vlm_config, "model_type", None)
    if model_type not in SUPPORTED_FAMILIES:
        raise ValueError(
            f"ICPT does not support backbones of model_type {model_type!r}. Supported families: "
            f"{', '.join(SUPPORTED_FAMILIES)}. Use an `AutoModelForImageTextToText` checkpoint of one of them."
        )
    return model_type


def vision_hidden_size(vlm_config) -> int:
    """Width d_v of the vision encoder's hidden states (what `reference_features` returns per layer).

    Example:

    ```python
    >>> from transformers import Qwen2VLConfig
    >>> vision_hidden_size(Qwen2VLConfig())  # Qwen2-VL calls it `embed_dim`; its `hidden_size` is the merger output
    1280
    ```
    """
    family = backbone_family(vlm_config)
    vision_config = vlm_config.vision_config
    if family == "qwen2_vl":
        return vision_config.embed_dim
    return vision_config.hidden_size


def num_vision_layers(vlm_config) -> int:
    """Number of encoder blocks of the vision tower (valid layers are 1..n and -n..-1).

    Example:

    ```python
    >>> from transformers import LlavaConfig
    >>> num_vision_layers(LlavaConfig())
    24
    ```
    """
    backbone_family(vlm_config)
    return vlm_config.vision_config.num_hidden_layers


def text_hidden_size(vlm_config) -> int:
    """Width of the language model's input embeddings (the width of ICPT's prompt vectors).

    Example:

    ```python
    >>> from transformers import LlavaConfig
    >>> text_hidden_size(LlavaConfig())
    4096
    ```
    """
    backbone_family(vlm_config)
    return vlm_config.text_config.hidden_size


def _block_indices(layers: Sequence[int], num_layers: int) -> list[int]:
    """0-based block indices of 1-based / negative layer numbers (`hidden_states[k]` convention)."""
    if len(layers) == 0:
        raise ValueError("`layers` is empty: pass at least one vision layer, e.g. `layers=[-1]` for the last block.")
    indices = []
    for layer in layers:
        if not isinstance(layer, int) or isinstance(layer, bool):
            raise ValueError(f"Vision layers must be integers, got {layer!r}.")
        if layer == 0 or not -num_layers <= layer <= num_layers:
            raise ValueError(
                f"Vision layer {layer} is invalid for an encoder of {num_layers} blocks: use 1..{num_layers} for the "
                f"output of that block or -{num_layers}..-1 counting from the end (-1 = last block); 0 (the "
                "embeddings) is not a block output."
            )
        indices.append(layer - 1 if layer > 0 else num_layers + layer)
    return indices


def _vision_tower(vlm) -> nn.Module:
    """The vision encoder of a `...ForConditionalGeneration` (or of its inner `...Model`)."""
    for owner in (getattr(vlm, "model", None), vlm):
        for name in _VISION_TOWER_NAMES:
            tower = getattr(owner, name, None) if owner is not None else None
            if isinstance(tower, nn.Module):
                return tower
    raise ValueError(
        f"Could not find the vision encoder of {type(vlm).__name__}: expected one of the attributes "
        f"{_VISION_TOWER_NAMES} on the model or on `model.model`."
    )


# Where each vision tower keeps its encoder blocks: CLIP / SigLIP (LLaVA), Idefics3 / SmolVLM, InternViT, Qwen.
_BLOCK_PATHS = ("vision_model.encoder.layers", "encoder.layers", "encoder.layer", "blocks")


def _encoder_blocks(tower: nn.Module, num_layers: int) -> nn.ModuleList:
    """The encoder blocks of a vision tower, checked against the config's number of layers."""
    for path in _BLOCK_PATHS:
        try:
            blocks = tower.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(blocks, nn.ModuleList) and len(blocks) == num_layers:
            return blocks
    raise ValueError(
        f"Could not find the {num_layers} encoder blocks of {type(tower).__name__} at any of {_BLOCK_PATHS}."
    )


def _run_and_capture(
    tower: nn.Module, blocks: nn.ModuleList, indices: list[int], **tower_inputs
) -> list[torch.Tensor]:
    """Runs the tower once and returns the outputs of the requested blocks, in the order of `indices`."""
    captured: dict[int, torch.Tensor] = {}

    def make_hook(index):
        def hook(module, args, output):
            # another thread's tower pass may run while these hooks are attached: write into its own dict
            target = CAPTURED_BLOCKS.get()
            if target is not None:
                target[index] = output[0] if isinstance(output, (tuple, list)) else output

        return hook

    handles = [blocks[index].register_forward_hook(make_hook(index)) for index in sorted(set(indices))]
    token = CAPTURED_BLOCKS.set(captured)
    # Eval mode even while ICPT trains, so reference features never see dropout.
    was_training = tower.training
    if was_training:
        tower.eval()
    try:
        tower(**tower_inputs)
    finally:
        if was_training:
            tower.train()
        CAPTURED_BLOCKS.reset(token)
        for handle in handles:
            handle.remove()
    return [captured[index] for index in indices]


def _tower_placement(tower: nn.Module) -> tuple[torch.device, torch.dtype]:
    parameter = next(tower.parameters())
    return parameter.device, parameter.dtype


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _drop_leading_tokens(hidden: torch.Tensor, vision_config) -> torch.Tensor:
    """Drops the tokens in front of the patch tokens (the CLS token of CLIP / InternViT; none for SigLIP)."""
    (image_h, image_w), (patch_h, patch_w) = _pair(vision_config.image_size), _pair(vision_config.patch_size)
    num_patches = (image_h // patch_h) * (image_w // patch_w)
    return hidden[:, hidden.shape[1] - num_patches :]


def _square_crop_features(vlm, tower, blocks, indices, pixel_values, crops_per_image) -> list[torch.Tensor]:
    """LLaVA / InternVL: fixed-size crops, each a full grid of patches (+ CLS); an image is its crops."""
    device, dtype = _tower_placement(tower)
    per_layer = _run_and_capture(tower, blocks, indices, pixel_values=pixel_values.to(device, dtype))
    vision_config = vlm.config.vision_config
    features = torch.cat([_drop_leading_tokens(hidden, vision_config) for hidden in per_layer], dim=-1)
    return [crops.reshape(-1, crops.shape[-1]) for crops in torch.split(features, crops_per_image)]


def _llava_next_features(vlm, tower, blocks, indices, image_inputs) -> list[torch.Tensor]:
    """LLaVA-NeXT: a base crop plus any-resolution tiles; tile padding removed the way the model removes it."""
    config = vlm.config
    vision_config = config.vision_config
    image_sizes = image_inputs["image_sizes"]
    pixel_values = image_inputs["pixel_values"]
    crops_per_image = [
        image_size_to_num_patches(
            size, grid_pinpoints=config.image_grid_pinpoints, patch_size=vision_config.image_size
        )
        for size in image_sizes
    ]
    if pixel_values.dim() == 5:  # (images, max crops, C, H, W): drop the padding crops
        pixel_values = torch.cat([crops[:count] for crops, count in zip(pixel_values, crops_per_image)], dim=0)
    device, dtype = _tower_placement(tower)
    per_layer = _run_and_capture(tower, blocks, indices, pixel_values=pixel_values.to(device, dtype))
    features = torch.cat([_drop_leading_tokens(hidden, vision_config) for hidden in per_layer], dim=-1)

    side = vision_config.image_size // vision_config.patch_size
    outputs = []
    for crops, size in zip(torch.split(features, crops_per_image), image_sizes):
        base, tiles = crops[0], crops[1:]
        if tiles.shape[0] == 0:
            outputs.append(base)
            continue
        rows, cols = get_anyres_image_grid_shape(size, config.image_grid_pinpoints, vision_config.image_size)
        # Tiles -> one (channels, rows * side, cols * side) map, as in LlavaNextModel.pack_image_features.
        grid = tiles.view(rows, cols, side, side, -1).permute(4, 0, 2, 1, 3).flatten(1, 2).flatten(2, 3)
        grid = unpad_image(grid, size)
        outputs.append(torch.cat([base, grid.flatten(1, 2).transpose(0, 1)], dim=0))
    return outputs


def _qwen_window_order(grid_thw: torch.Tensor, vision_config) -> torch.Tensor:
    """The merge-unit permutation Qwen2.5-VL applies before its blocks (window attention), for all images."""
    merge = vision_config.spatial_merge_size
    window = vision_config.window_size // merge // vision_config.patch_size
    order, offset = [], 0
    for t, h, w in grid_thw.tolist():
        llm_h, llm_w = h // merge, w // merge
        index = torch.arange(t * llm_h * llm_w).reshape(t, llm_h, llm_w)
        pad_h, pad_w = window - llm_h % window, window - llm_w % window
        index = nn.functional.pad(index, (0, pad_w, 0, pad_h), value=-100)
        rows, cols = (llm_h + pad_h) // window, (llm_w + pad_w) // window
        index = index.reshape(t, rows, window, cols, window).permute(0, 1, 3, 2, 4).reshape(-1)
        order.append(index[index != -100] + offset)
        offset += t * llm_h * llm_w
    return torch.cat(order)


def _qwen_features(vlm, tower, blocks, indices, image_inputs, family) -> list[torch.Tensor]:
    """Qwen2-VL / Qwen2.5-VL: one flat sequence of patches for all images, split by `image_grid_thw`."""
    grid_thw = image_inputs["image_grid_thw"]
    device, dtype = _tower_placement(tower)
    per_layer = _run_and_capture(
        tower,
        blocks,
        indices,
        hidden_states=image_inputs["pixel_values"].to(device, dtype),
        grid_thw=grid_thw.to(device),
    )
    features = torch.cat(per_layer, dim=-1)
    if family == "qwen2_5_vl":
        # The blocks see merge units in window order; put them back in the processor's patch order.
        unit = vlm.config.vision_config.spatial_merge_size**2
        inverse = torch.argsort(_qwen_window_order(grid_thw.cpu(), vlm.config.vision_config)).to(device)
        features = features.reshape(-1, unit, features.shape[-1])[inverse].reshape(-1, features.shape[-1])
    return list(torch.split(features, grid_thw.prod(-1).tolist()))


def _split_image_features(vlm, tower, blocks, indices, image_inputs) -> list[torch.Tensor]:
    """Idefics3 / SmolVLM: each image is rows x cols crops plus a global view; crops are padded to a common size."""
    if "rows" not in image_inputs or "cols" not in image_inputs:
        raise ValueError(
            "Idefics3/SmolVLM reference inputs must say how many crops each image was split into: call the image "
            "processor with `return_row_col_info=True` (or use `process_images` of processing_icpt)."
        )
    pixel_values = image_inputs["pixel_values"]  # (samples, max crops, C, H, W)
    pixel_mask = image_inputs.get("pixel_attention_mask")
    if pixel_mask is None:
        pixel_mask = torch.ones(pixel_values.shape[:2] + pixel_values.shape[-2:], dtype=torch.bool)

    rows, cols = image_inputs["rows"], image_inputs["cols"]
    rows = rows.tolist() if hasattr(rows, "tolist") else rows
    cols = cols.tolist() if hasattr(cols, "tolist") else cols
    crops, masks, crops_per_image = [], [], []
    for sample_pixels, sample_mask, sample_rows, sample_cols in zip(pixel_values, pixel_mask, rows, cols):
        start = 0
        for num_rows, num_cols in zip(sample_rows, sample_cols):
            count = num_rows * num_cols + 1  # split crops + the global view (just 1 when not split)
            crops.append(sample_pixels[start : start + count])
            masks.append(sample_mask[start : start + count])
            crops_per_image.append(count)
            start += count
    crops, masks = torch.cat(crops), torch.cat(masks).bool()

    patch = tower.config.patch_size
    patch_mask = masks.unfold(1, patch, patch).unfold(2, patch, patch).sum(dim=(-1, -2)) > 0
    device, dtype = _tower_placement(tower)
    per_layer = _run_and_capture(
        tower, blocks, indices, pixel_values=crops.to(device, dtype), patch_attention_mask=patch_mask.to(device)
    )
    features = torch.cat(per_layer, dim=-1)  # (crops, patches, features)
    valid = patch_mask.flatten(1).to(device)
    per_crop = [crop_features[crop_valid] for crop_features, crop_valid in zip(features, valid)]
    outputs, start = [], 0
    for count in crops_per_image:
        outputs.append(torch.cat(per_crop[start : start + count]))
        start += count
    return outputs


class ReferenceFeatureCache:
    """
    The vision tower's patch features of recently seen images, keyed by image content (a hash of the processed
    pixels), so that references given again -- the same photos in every call of `references=`, a concept encoded
    twice, one photo in many rows of a batch -- are not encoded again.

    Entries are dropped least recently used first once they hold more than `max_bytes`; `max_bytes = 0` turns the
    cache off. It serves calls without gradient recording (inference); training steps bypass it. A key also holds the tower's identity, its weights' version counters and the layers read, so features
    of a tower whose weights changed in place (training, `load_state_dict`) are never returned. Thread-safe; the
    returned tensors are shared with the cache: do not modify them in place.

    Example:

    ```python
    >>> from modeling_icpt.reference_features import REFERENCE_FEATURE_CACHE
    >>> REFERENCE_FEATURE_CACHE.max_bytes = 64 * 2**20  # or 0 to switch it off
    >>> REFERENCE_FEATURE_CACHE.clear()
    ```
    """

    def __init__(self, max_bytes: int = 256 * 2**20):
        self.max_bytes = max_bytes
        self.hits = self.misses = 0
        self._entries: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key, value) -> None:
        size = sum(t.numel() * t.element_size() for t in (value if isinstance(value, list) else [value]))
        with self._lock:
            if size > self.max_bytes or key in self._entries:
                return
            self._entries[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= sum(t.numel() * t.element_size() for t in (dropped if isinstance(dropped, list) else [dropped]))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self.hits = self.misses = 0

    def __len__(self):
        return len(self._entries)


# the features of recently seen reference (and query) images, shared by every model of the process
REFERENCE_FEATURE_CACHE = ReferenceFeatureCache()


def _content_digest(*tensors) -> str:
    """A hash of the tensors' shapes, dtypes and bytes."""
    digest = hashlib.sha256()  # hardware-accelerated on most CPUs: the fastest strong hash of hashlib
    for tensor in tensors:
        tensor = tensor.detach().contiguous()
        digest.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.view(torch.uint8).reshape(-1).cpu().numpy().data if tensor.numel() else b"")
    return digest.hexdigest()[:32]


def _tower_state(tower: nn.Module, indices: list[int]) -> tuple:
    """What cached features depend on besides the image: this tower, its weights' in-place versions, the layers."""
    parameters = list(tower.parameters())
    return id(tower), parameters[0].data_ptr(), sum(p._version for p in parameters), tuple(indices)


def reference_features(vlm, image_inputs: dict[str, torch.Tensor], layers: Sequence[int]) -> list[torch.Tensor]:
    """Patch features of R reference images from the backbone's frozen vision encoder, one tensor per image.

    Args:
        vlm: an `AutoModelForImageTextToText` model of a supported family.
        image_inputs: what the backbone's image processor returned for the R images passed as one flat list
            (`pixel_values` plus `image_sizes` / `image_grid_thw` / `num_patches` / `pixel_attention_mask` as the
            family returns them). Idefics3 and SmolVLM also need `rows` and `cols` (`return_row_col_info=True`):
            `process_reference_images` of processing_icpt processes images with the backbone processor's own
            image defaults and includes them.
        layers: encoder blocks to read, `hidden_states[k]` style: `k >= 1` is the output of the k-th block, `-1`
            the last block. Features of several layers are concatenated along the feature dimension.

    Returns:
        A list of R tensors of shape `(num_patches_i, len(layers) * d_v)`, in the vision tower's dtype and device:
        every patch of every crop/tile of image i (padding crops and padding patches dropped, CLS dropped).

    Example:

    ```python
    >>> inputs = image_processor(images=[photo_1, photo_2], return_tensors="pt")
    >>> features = reference_features(vlm, inputs, layers=[-1])
    >>> [f.shape[-1] for f in features] == [vision_hidden_size(vlm.config)] * 2
    True
    ```
    """
    family = backbone_family(vlm.config)
    num_layers = num_vision_layers(vlm.config)
    indices = _block_indices(list(layers), num_layers)
    tower = _vision_tower(vlm)
    blocks = _encoder_blocks(tower, num_layers)
    cache = REFERENCE_FEATURE_CACHE
    if cache.max_bytes <= 0 or torch.is_grad_enabled():
        # the cache serves inference (`encode_concepts`, `generate`, retrieval: no gradients recorded); a training
        # step draws new photos, which would only fill it
        return _compute_features(vlm, family, tower, blocks, indices, image_inputs)
    state = _tower_state(tower, indices)
    if family == "llava":  # one crop per image: each image is looked up, and only the new ones encoded
        pixel_values = image_inputs["pixel_values"]
        keys = [(state, _content_digest(image)) for image in pixel_values]
        found = [cache.get(key) for key in keys]
        missing = [i for i, feature in enumerate(found) if feature is None]
        if missing:
            computed = _compute_features(vlm, family, tower, blocks, indices,
                                         {**image_inputs, "pixel_values": pixel_values[missing]})
            for i, feature in zip(missing, computed):
                found[i] = feature.clone()  # its own storage, not a view that keeps the whole batch alive
                cache.put(keys[i], found[i])
        return found
    # other families lay several crops or a flat patch sequence per image: the whole call is one entry
    key = (state, family, _content_digest(*(image_inputs[name] for name in sorted(image_inputs)
                                            if isinstance(image_inputs[name], torch.Tensor))),
           repr({name: value for name, value in sorted(image_inputs.items()) if not isinstance(value, torch.Tensor)}))
    features = cache.get(key)
    if features is None:
        features = _compute_features(vlm, family, tower, blocks, indices, image_inputs)
        cache.put(key, features)
    return list(features)


def _compute_features(vlm, family, tower, blocks, indices, image_inputs) -> list[torch.Tensor]:
    with torch.no_grad():
        if family == "llava":
            pixel_values = image_inputs["pixel_values"]
            return _square_crop_features(vlm, tower, blocks, indices, pixel_values, [1] * pixel_values.shape[0])
        if family == "internvl":
            pixel_values = image_inputs["pixel_values"]
            num_patches = image_inputs.get("num_patches")
            crops_per_image = [1] * pixel_values.shape[0] if num_patches is None else [int(n) for n in num_patches]
            if sum(crops_per_image) != pixel_values.shape[0]:
                raise ValueError(
                    f"`num_patches` sums to {sum(crops_per_image)} crops but `pixel_values` holds "
                    f"{pixel_values.shape[0]}: pass the image processor's output unchanged."
                )
            return _square_crop_features(vlm, tower, blocks, indices, pixel_values, crops_per_image)
        if family == "llava_next":
            return _llava_next_features(vlm, tower, blocks, indices, image_inputs)
        if family in ("qwen2_vl", "qwen2_5_vl"):
            return _qwen_features(vlm, tower, blocks, indices, image_inputs, family)
        return _split_image_features(vlm, tower, blocks, indices, image_inputs)
