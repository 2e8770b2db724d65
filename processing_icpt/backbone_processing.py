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
"""The backbone's own processor for ICPT's query text and images, on every supported family.

Some backbone processors (`Qwen2VLProcessor`, `Qwen2_5_VLProcessor`, `InternVLProcessor`, `SmolVLMProcessor`) take a
video processor, which needs torchvision (and SmolVLM's also needs `num2words`). ICPT never sends videos, so where
such a processor cannot be built, `ImageOnlyBackboneProcessor` stands in for it: built from the image processor and
the tokenizer only, it expands the image placeholders in the text exactly as the real class does.
"""

import inspect
import json
from itertools import accumulate
from pathlib import Path

import transformers
from transformers import AutoConfig, AutoImageProcessor, AutoProcessor, AutoTokenizer, BatchFeature
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES
from transformers.processing_utils import ProcessorMixin
from transformers.utils import is_num2words_available, is_torchvision_available


# Constructor arguments that are parts of a processor, not settings (saved separately or not at all).
_PROCESSOR_PARTS = ("self", "image_processor", "tokenizer", "video_processor", "chat_template")

# Real processor classes ImageOnlyBackboneProcessor can stand in for.
_IMAGE_ONLY_CLASSES = ("Qwen2VLProcessor", "Qwen2_5_VLProcessor", "InternVLProcessor", "SmolVLMProcessor")


def _processor_class(class_name: str) -> type:
    processor_class = getattr(transformers, str(class_name), None)
    if not (isinstance(processor_class, type) and issubclass(processor_class, ProcessorMixin)):
        raise ValueError(
            f"Unknown backbone processor class {class_name!r}: expected the name of a transformers processor class "
            "such as 'LlavaProcessor' or 'Qwen2VLProcessor'."
        )
    return processor_class


def _settings_of(processor_class: type) -> list[str]:
    """Names of the constructor arguments of a processor class that are settings (e.g. `patch_size`)."""
    parameters = inspect.signature(processor_class.__init__).parameters.values()
    return [
        parameter.name
        for parameter in parameters
        if parameter.name not in _PROCESSOR_PARTS
        and parameter.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]


def _takes_video_processor(processor_class: type) -> bool:
    return "video_processor" in inspect.signature(processor_class.__init__).parameters


def _can_load_real(processor_class: type) -> bool:
    """Whether `AutoProcessor` can load the real class here (video processors need torchvision)."""
    if _takes_video_processor(processor_class) and not is_torchvision_available():
        return False
    if processor_class.__name__ == "SmolVLMProcessor" and not is_num2words_available():
        return False
    return True


def _class_defaults(processor_class: type, name: str) -> dict:
    """A real processor's per-modality default kwargs (e.g. InternVL's `images_kwargs = {"crop_to_patches": True}`)."""
    value = getattr(processor_class, name, None)
    return dict(value) if isinstance(value, dict) else {}


class ImageOnlyBackboneProcessor:
    """The image + text half of a backbone processor whose real class cannot be built without a video processor.

    Stands in for `Qwen2VLProcessor`, `Qwen2_5_VLProcessor`, `InternVLProcessor` and `SmolVLMProcessor`: same image
    processing, same placeholder expansion, same outputs (`input_ids`, `attention_mask`, `pixel_values`, and
    `image_grid_thw` / `pixel_attention_mask` / `mm_token_type_ids` where the real class returns them).

    Args:
        image_processor: the backbone's image processor.
        tokenizer: the backbone's tokenizer.
        processor_class (`str`): name of the real processor class this one stands in for.
        chat_template (`str`, *optional*): the backbone's chat template.
        **settings: the real class's constructor settings (`image_seq_length` for InternVL, `image_seq_len` for
            SmolVLM); missing ones take the real class's defaults.

    Example:

    ```python
    >>> processor = ImageOnlyBackboneProcessor(image_processor, tokenizer, processor_class="Qwen2VLProcessor")
    >>> inputs = processor(text=["<|vision_start|><|image_pad|><|vision_end|>What is this?"], images=[[photo]])
    >>> sorted(inputs)
    ['attention_mask', 'image_grid_thw', 'input_ids', 'mm_token_type_ids', 'pixel_values']
    ```
    """

    def __init__(self, image_processor, tokenizer, processor_class: str, chat_template: str | None = None, **settings):
        if processor_class not in _IMAGE_ONLY_CLASSES:
            raise ValueError(
                f"ImageOnlyBackboneProcessor cannot stand in for {processor_class!r}; it covers "
                f"{_IMAGE_ONLY_CLASSES}. Load that backbone's processor with `AutoProcessor.from_pretrained` "
                "(with torchvision installed)."
            )
        real_class = _processor_class(processor_class)
        known = _settings_of(real_class)
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ValueError(f"{processor_class} has no setting(s) {unknown}; its settings are {known}.")
        signature = inspect.signature(real_class.__init__).parameters
        self.settings = {name: settings.get(name, signature[name].default) for name in known}
        self.processor_class = processor_class
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.text_kwargs = _class_defaults(real_class, "text_kwargs")
        self.images_kwargs = _class_defaults(real_class, "images_kwargs")
        self.return_mm_token_type_ids = bool(getattr(real_class, "return_mm_token_type_ids", False))

        # Placeholder tokens, read from the tokenizer the way the real class reads them.
        if processor_class == "InternVLProcessor":
            self.image_token = tokenizer.context_image_token
            self.start_image_token = tokenizer.start_image_token
            self.end_image_token = tokenizer.end_image_token
            image_token_ids = [
                tokenizer.context_image_token_id,
                tokenizer.start_image_token_id,
                tokenizer.end_image_token_id,
            ]
        elif processor_class == "SmolVLMProcessor":
            self.image_token = getattr(tokenizer, "image_token", "<image>")
            self.fake_image_token = getattr(tokenizer, "fake_image_token", "<fake_token_around_image>")
            self.global_image_token = getattr(tokenizer, "global_image_token", "<global-img>")
            image_token_ids = [tokenizer.convert_tokens_to_ids(self.image_token)]
        else:
            self.image_token = getattr(tokenizer, "image_token", "<|image_pad|>")
            image_token_ids = [tokenizer.convert_tokens_to_ids(self.image_token)]
        self.image_token_ids = image_token_ids
        # Only the Qwen processors mark video tokens in `mm_token_type_ids` (the others define no `video_token_id`).
        self.video_token_ids = []
        if processor_class.startswith("Qwen"):
            self.video_token_ids = [
                tokenizer.convert_tokens_to_ids(getattr(tokenizer, "video_token", "<|video_pad|>"))
            ]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(processor_class={self.processor_class!r}, settings={self.settings})"

    def _image_replacement(self, image_inputs, index: int) -> str:
        """The text that replaces the `index`-th image placeholder (as the real class's `replace_image_token`)."""
        if self.processor_class == "InternVLProcessor":
            num_crops = int(image_inputs["num_patches"][index])
            context = self.image_token * (self.settings["image_seq_length"] * num_crops)
            return f"{self.start_image_token}{context}{self.end_image_token}"
        if self.processor_class == "SmolVLMProcessor":
            rows = [row for sample in image_inputs["rows"] for row in sample][index]
            cols = [col for sample in image_inputs["cols"] for col in sample][index]
            return self._split_image_prompt(int(rows), int(cols))
        merge_length = self.image_processor.merge_size**2
        return self.image_token * int(image_inputs["image_grid_thw"][index].prod() // merge_length)

    def _split_image_prompt(self, rows: int, cols: int) -> str:
        seq_len = self.settings["image_seq_len"]
        global_view = (
            f"{self.fake_image_token}{self.global_image_token}{self.image_token * seq_len}{self.fake_image_token}"
        )
        if rows == 0 and cols == 0:
            return global_view
        text = ""
        for row in range(rows):
            for col in range(cols):
                text += f"{self.fake_image_token}<row_{row + 1}_col_{col + 1}>{self.image_token * seq_len}"
            text += "\n"
        return text + "\n" + global_view

    def _split_kwargs(self, kwargs: dict) -> tuple[dict, dict]:
        """Routes call kwargs to the image processor (its valid kwargs) or the tokenizer (everything else)."""
        image_keys = set(getattr(getattr(self.image_processor, "valid_kwargs", None), "__annotations__", {}))
        images_kwargs = {key: value for key, value in kwargs.items() if key in image_keys}
        text_kwargs = {key: value for key, value in kwargs.items() if key not in image_keys}
        return images_kwargs, text_kwargs

    def __call__(
        self,
        text: str | list[str] | None = None,
        images=None,
        return_tensors: str | None = "pt",
        padding: bool | str = True,
        return_mm_token_type_ids: bool | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Tokenizes `text` with each image placeholder expanded to the image's tokens, and processes `images`.

        `images` holds the images of each text in order (`[[img_a], [img_b, img_c]]`) or is one flat list.
        Other kwargs go to the image processor when it accepts them, else to the tokenizer.
        """
        if text is None:
            raise ValueError(f"{self.processor_class} needs `text` (with one image placeholder per image).")
        texts = [text] if isinstance(text, str) else list(text)
        call_images_kwargs, call_text_kwargs = self._split_kwargs(kwargs)
        # Defaults of the real class; as in ProcessorMixin, tokenizer init kwargs override them.
        text_kwargs = {
            key: getattr(self.tokenizer, key, value) if key in self.tokenizer.init_kwargs else value
            for key, value in self.text_kwargs.items()
        }
        text_kwargs.update(padding=padding, return_tensors=return_tensors, **call_text_kwargs)
        images_kwargs = {**self.images_kwargs, **call_images_kwargs}

        placeholders_per_text = [sample.count(self.image_token) for sample in texts]
        image_inputs = {}
        if images is not None:
            nested = self._nest_images(images, placeholders_per_text)
            if [len(sample) for sample in nested] != placeholders_per_text:
                raise ValueError(
                    f"Each text needs one {self.image_token} per image: found {placeholders_per_text} placeholders "
                    f"and {[len(sample) for sample in nested]} images per text."
                )
            # SmolVLM's image processor takes the images grouped per text; the others take a flat list.
            batch = (
                nested if self.processor_class == "SmolVLMProcessor" else [im for sample in nested for im in sample]
            )
            image_inputs = dict(self.image_processor(batch, return_tensors=return_tensors, **images_kwargs))
            replacements = iter([self._image_replacement(image_inputs, i) for i in range(sum(placeholders_per_text))])
            texts = [
                "".join(part + (next(replacements) if i < len(parts) - 1 else "") for i, part in enumerate(parts))
                for parts in (sample.split(self.image_token) for sample in texts)
            ]
            for key in ("num_patches", "rows", "cols"):  # inputs used only to count the image tokens
                image_inputs.pop(key, None)
        elif any(placeholders_per_text):
            raise ValueError(f"Found {sum(placeholders_per_text)} {self.image_token} in the text but no images.")

        text_inputs = dict(self.tokenizer(texts, **text_kwargs))
        if self.return_mm_token_type_ids if return_mm_token_type_ids is None else return_mm_token_type_ids:
            text_inputs["mm_token_type_ids"] = self._mm_token_type_ids(text_inputs["input_ids"])
        return BatchFeature({**text_inputs, **image_inputs}, tensor_type=return_tensors)

    @staticmethod
    def _nest_images(images, placeholders_per_text: list[int]) -> list[list]:
        if all(isinstance(sample, (list, tuple)) for sample in images):
            return [list(sample) for sample in images]
        if any(isinstance(sample, (list, tuple)) for sample in images):
            raise ValueError("Pass `images` either as one list per text or as one flat list, not a mix of both.")
        # A flat list: hand the images out to the texts in placeholder order.
        bounds = list(accumulate(placeholders_per_text, initial=0))
        nested = [list(images[start:end]) for start, end in zip(bounds[:-1], bounds[1:])]
        if len(images) > bounds[-1]:
            nested[-1].extend(images[bounds[-1] :])
        return nested

    def _mm_token_type_ids(self, input_ids) -> list[list[int]]:
        """1 on image tokens, 2 on video tokens, 0 elsewhere (as ProcessorMixin.create_mm_token_type_ids)."""
        image_ids, video_ids = set(self.image_token_ids), set(self.video_token_ids)
        types = []
        for row in input_ids:
            row = row.tolist() if hasattr(row, "tolist") else row
            types.append([1 if token in image_ids else 2 if token in video_ids else 0 for token in row])
        return types

    def apply_chat_template(self, conversation, add_generation_prompt: bool = False, **kwargs) -> str:
        """Renders a conversation with the backbone's chat template into text (with image placeholders)."""
        return self.tokenizer.apply_chat_template(
            conversation,
            chat_template=self.chat_template,
            add_generation_prompt=add_generation_prompt,
            tokenize=False,
            **kwargs,
        )

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)


def backbone_processor_config(processor) -> dict:
    """The JSON-serializable settings of a backbone processor: its class name and constructor settings.

    Together with the image processor, the tokenizer and the chat template, this is everything
    `build_backbone_processor` needs to rebuild the same processor.

    Example:

    ```python
    >>> config = backbone_processor_config(llava_processor)
    >>> config["processor_class"], config["patch_size"], config["vision_feature_select_strategy"]
    ('LlavaProcessor', 14, 'default')
    ```
    """
    if isinstance(processor, ImageOnlyBackboneProcessor):
        settings = dict(processor.settings)
        class_name = processor.processor_class
    else:
        class_name = type(processor).__name__
        settings = {
            name: getattr(processor, name) for name in _settings_of(type(processor)) if hasattr(processor, name)
        }
    for name, value in settings.items():
        try:
            json.dumps(value)
        except TypeError as error:
            raise ValueError(
                f"Setting {name!r} of {class_name} is not JSON-serializable ({type(value).__name__}); "
                "convert it to plain Python values before saving."
            ) from error
    return {"processor_class": class_name, **dict(sorted(settings.items()))}


def build_backbone_processor(image_processor, tokenizer, config: dict, chat_template: str | None = None):
    """Rebuilds a backbone processor from its parts and `backbone_processor_config`'s output.

    The real processor class where it is built from an image processor and a tokenizer alone, else (classes that
    also take a video processor) the `ImageOnlyBackboneProcessor` that stands in for it, with the same outputs.

    Example:

    ```python
    >>> config = backbone_processor_config(processor)
    >>> rebuilt = build_backbone_processor(processor.image_processor, processor.tokenizer, config)
    ```
    """
    if "processor_class" not in config:
        raise ValueError(
            "The backbone processor config has no 'processor_class': build it with `backbone_processor_config`."
        )
    settings = {key: value for key, value in config.items() if key != "processor_class"}
    processor_class = _processor_class(config["processor_class"])
    # A processor that takes a video processor cannot be rebuilt from an image processor and a tokenizer.
    if not _takes_video_processor(processor_class):
        return processor_class(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template, **settings
        )
    return ImageOnlyBackboneProcessor(
        image_processor, tokenizer, processor_class=processor_class.__name__, chat_template=chat_template, **settings
    )


def load_backbone_processor(name_or_path: str | Path, **kwargs):
    """Loads the processor of a backbone checkpoint (offline on a saved folder).

    Returns the real processor class (`AutoProcessor`) where it can be loaded here, else an
    `ImageOnlyBackboneProcessor` built from the checkpoint's image processor, tokenizer, processor settings
    (`processor_config.json`) and chat template. `kwargs` go to the `from_pretrained` calls.

    Example:

    ```python
    >>> processor = load_backbone_processor("Qwen/Qwen2-VL-2B-Instruct")
    >>> inputs = processor(text=[prompt], images=[[photo]], return_tensors="pt", padding=True)
    ```
    """
    name_or_path = str(name_or_path)
    processor_dict, _ = ProcessorMixin.get_processor_dict(name_or_path, **kwargs)
    class_name = processor_dict.get("processor_class")
    if class_name is None:
        model_type = AutoConfig.from_pretrained(name_or_path, **kwargs).model_type
        class_name = PROCESSOR_MAPPING_NAMES.get(model_type)
        if class_name is None:
            raise ValueError(
                f"{name_or_path} names no processor class and transformers knows none for model_type {model_type!r}."
            )
    processor_class = _processor_class(class_name)
    if _can_load_real(processor_class):
        return AutoProcessor.from_pretrained(name_or_path, **kwargs)
    if processor_class.__name__ not in _IMAGE_ONLY_CLASSES:
        raise ValueError(
            f"{processor_class.__name__} needs a video processor, which needs torchvision: install torchvision "
            "(`pip install torchvision` matching your torch build)."
        )
    image_processor = AutoImageProcessor.from_pretrained(name_or_path, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    settings = {name: processor_dict[name] for name in _settings_of(processor_class) if name in processor_dict}
    chat_template = processor_dict.get("chat_template") or tokenizer.chat_template
    return ImageOnlyBackboneProcessor(
        image_processor, tokenizer, processor_class=processor_class.__name__, chat_template=chat_template, **settings
    )


def process_reference_images(processor, images: list, return_tensors: str = "pt") -> BatchFeature:
    """Image inputs for a flat list of reference images, processed as the backbone's processor processes query images.

    Uses the processor's own image defaults (InternVL tiles into crops, LLaVA-NeXT pads, Idefics3/SmolVLM report the
    crop grid as `rows`/`cols`), which is what `reference_features` of modeling_icpt expects.

    Example:

    ```python
    >>> inputs = process_reference_images(processor, [photo_1, photo_2, photo_3])
    >>> features = reference_features(vlm, inputs, layers=[-1])  # 3 tensors
    ```
    """
    if isinstance(processor, ImageOnlyBackboneProcessor):
        images_kwargs = processor.images_kwargs
    else:
        images_kwargs = _class_defaults(type(processor), "images_kwargs")
    return processor.image_processor(images=list(images), return_tensors=return_tensors, **images_kwargs)
