"""The web app (Gradio) behind `icpt serve`: personalize a model from photos in the browser.

In the page: add a concept from a few uploaded photos and a name (`<bo>`), see the concepts of your bank with the
patches of each photo that its prompt rows read, ask a question about a new photo that names concepts and see which
concepts entered the prompt and how many tokens each took, and save or load a concept bank file. Bad input (a
missing or damaged image, a bad or repeated label, no photos, a damaged bank) is shown in the page with the
library's message, and the app keeps running.

One model object serves every visitor (ICPT's calls carry their concepts with them, so concurrent calls do not mix);
each browser session has its own bank (`gr.State`), so visitors never see each other's concepts.

    icpt serve                                   # the embedded default, http://127.0.0.1:7860
    icpt serve --model PATH_OR_REPO --port 8080  # any ICPT checkpoint

Python:

```python
>>> from icpt.app import ConceptApp
>>> app = ConceptApp.from_pretrained()          # the embedded default  # doctest: +SKIP
>>> app.launch(port=7860)                        # doctest: +SKIP  (app.build(): the gr.Blocks, to embed)
```
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import html
import itertools
import math
import os
import tempfile
import time
from pathlib import Path

# no telemetry, no update check: the app must not reach the network unless a user asks it to
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageFont, ImageOps  # noqa: E402

from icpt.inference import DEFAULT_MODEL, answer, load_model  # noqa: E402
from icpt.world.world import world_for  # noqa: E402
from modeling_icpt import ConceptBank, ICPTInputError  # noqa: E402
from modeling_icpt.modeling_icpt import REFERENCE_PREFIX  # noqa: E402
from processing_icpt import ICPTProcessor, load_image  # noqa: E402

try:  # the page needs gradio, an optional dependency (`pip install 'icpt[app]'`); the handlers do not
    import gradio as gr
except ImportError:
    gr = None

STATUS_ID, CONCEPTS_ID, PICTURES_ID, ANSWER_ID, PROMPT_ID = (
    "icpt-status", "icpt-concepts", "icpt-pictures", "icpt-answer", "icpt-prompt")
# colours of concepts in the pictures (cycled), and of the other parts of a prompt
PALETTE = [(230, 97, 0), (93, 58, 155), (0, 140, 120), (200, 30, 90), (30, 110, 200), (150, 120, 0)]
TEXT_COLOUR, IMAGE_COLOUR = (200, 200, 200), (150, 190, 230)
# names the example button gives, in order, then again with a number
EXAMPLE_NAMES = ("bo", "kiki", "mia", "ayo", "bix", "cuz")
CSS = (f"#{STATUS_ID} {{ border-left: 4px solid #999; padding-left: 8px; }} "
       f"#{STATUS_ID} .error-text {{ color: #b00020; font-weight: 600; }}")


@dataclasses.dataclass(frozen=True)
class Session:
    """What one browser session holds: its bank, and for concepts added from photos, their picture and photo count.

    Frozen: every change makes a new `Session`, so an event never sees another event's half-made change.
    """

    bank: object = None  # a ConceptBank, or None before the first concept
    pictures: dict = dataclasses.field(default_factory=dict)  # label -> PIL image (photos over attention maps)
    photos: dict = dataclasses.field(default_factory=dict)  # label -> number of photos (absent: loaded from a bank)


# ---------------------------------------------------------------- what the projector looks at


@torch.no_grad()
def concept_attention(model, references, lengths: dict[str, int]) -> list[list[torch.Tensor]]:
    """
    For each concept of `references` (`processor.prepare_references(...)`), for each of its photos, how strongly its
    prompt rows read each patch of that photo: the projector's cross-attention weights, averaged over its blocks and
    over the rows the concept keeps (`lengths`, from its `ConceptBank`); each concept's weights sum to 1 over its
    patches.

    Example:

    ```python
    >>> references = processor.prepare_references({"<bo>": photos})  # doctest: +SKIP
    >>> bank = model.encode_concepts(**references)  # doctest: +SKIP
    >>> [w.shape for w in concept_attention(model, references, bank.lengths)[0]]  # doctest: +SKIP
    [torch.Size([64]), torch.Size([64]), torch.Size([64])]
    ```
    """
    image_inputs = {k[len(REFERENCE_PREFIX):]: v for k, v in references.items() if k.startswith(REFERENCE_PREFIX)}
    # the projector's padded inputs, as encode_concepts builds them; the projector is re-run (it is tiny) to
    # return its attention, so the bank still comes from the public `encode_concepts`
    _, inputs, _ = model._encode(references["concept_name_ids"], references["concept_name_mask"],
                                 references["reference_concept_index"], **image_inputs)
    inputs = {k: v for k, v in inputs.items() if k != "background"}
    _, attentions = model.projector(**inputs, output_attentions=True)
    weights = torch.stack(attentions).mean(0)  # (C, rows, T)
    per_concept = []
    for c, label in enumerate(references["concept_names"]):
        read = weights[c, : lengths[label]].mean(0).float().cpu()
        mask, which = inputs["patch_mask"][c].cpu(), inputs["reference_index"][c].cpu()
        photos = int(which[mask].max()) + 1 if mask.any() else 0
        per_concept.append([read[mask & (which == i)] for i in range(photos)])
    return per_concept


def attention_picture(photos: list[Image.Image], weights: list[torch.Tensor], cell: int = 160,
                      center_crop: bool = False) -> Image.Image:
    """
    The photos of one concept in a row, and under each the same photo lit where its prompt rows read: patches the rows
    read most stay bright, the others go dark (one scale for all photos of the concept, so a photo the rows read
    little stays dark). Patches are drawn on a square grid over the photo as the vision encoder saw it: its central
    square with `center_crop` (CLIP-style image processors), else the whole photo squeezed to a square. A backbone
    whose patches of one photo do not form a square grid (tiles, merged patches) gets the photos alone.
    """
    top = max((float(w.max()) for w in weights if w.numel()), default=0.0) or 1.0
    canvas = Image.new("RGB", (len(photos) * (cell + 8) + 8, 2 * cell + 24), "white")
    for i, (photo, read) in enumerate(zip(photos, weights)):
        x = 8 + i * (cell + 8)
        photo = photo.convert("RGB")
        square = ImageOps.fit(photo, (cell, cell), Image.BICUBIC) if center_crop else photo.resize((cell, cell), Image.BICUBIC)
        canvas.paste(square, (x, 8))
        side = int(round(read.numel() ** 0.5))
        if side == 0 or side * side != read.numel():
            continue
        heat = (read / top).clamp(0, 1).view(side, side).numpy()
        light = np.asarray(Image.fromarray((heat * 255).astype(np.uint8)).resize((cell, cell), Image.NEAREST)) / 255
        lit = np.asarray(square, dtype=np.float32) * (0.15 + 0.85 * light[..., None])
        canvas.paste(Image.fromarray(lit.astype(np.uint8)), (x, cell + 16))
    return canvas


# ---------------------------------------------------------------- what entered the prompt


def prompt_parts(model, inputs) -> tuple[list[tuple[str, int]], list[str]]:
    """
    The first sequence of the processor's output as runs `[(part, tokens)]` in order, where a part is a concept's
    label, `"image"` or `"text"`; and the concepts that entered the prompt, in order.
    """
    ids = inputs["input_ids"][0].tolist()
    slot = model.config.prompt_token_id
    image = getattr(model.vlm.config, "image_token_id", None)
    names = inputs.get("concept_names") or []
    order = [names[i] for i in inputs["prompt_concepts"][0].tolist() if i >= 0] if "prompt_concepts" in inputs else []
    runs, concepts = [], iter(order)
    for position, token in enumerate(ids):
        if token == slot:
            # a run of slots is one concept's prompt; runs follow `prompt_concepts`' order
            if position > 0 and ids[position - 1] == slot:
                runs[-1][1] += 1
            else:
                runs.append([next(concepts), 1])
            continue
        part = "image" if token == image else "text"
        if runs and runs[-1][0] == part:
            runs[-1][1] += 1
        else:
            runs.append([part, 1])
    return [tuple(run) for run in runs], order


def prompt_picture(runs: list[tuple[str, int]], colours: dict[str, tuple], width: int = 720) -> Image.Image:
    """A strip with one cell per prompt token, coloured by what it is (a concept, the photo, text), and a legend."""
    total = sum(tokens for _, tokens in runs) or 1
    counts = {}
    for name, tokens in runs:
        counts[name] = counts.get(name, 0) + tokens
    legend = [name for name in counts if name in colours] + [name for name in ("image", "text") if name in counts]
    canvas = Image.new("RGB", (width + 16, 72 + 24 * len(legend)), "white")
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default(size=16)
    x = 8.0
    for name, tokens in runs:
        draw.rectangle([x, 8, x + tokens * width / total - 1, 40], fill=_colour(name, colours))
        x += tokens * width / total
    draw.text((8, 46), f"the prompt, left to right: {total} tokens", fill="black", font=font)
    for i, name in enumerate(legend):
        y = 72 + 24 * i
        draw.rectangle([8, y, 24, y + 16], fill=_colour(name, colours))
        what = {"image": "the photo", "text": "text"}.get(name, f"{name}'s prompt")
        draw.text((32, y), f"{what}: {counts[name]} tokens", fill="black", font=font)
    return canvas


def _colour(name, colours):
    return colours.get(name, IMAGE_COLOUR if name == "image" else TEXT_COLOUR)


def concept_colours(labels) -> dict[str, tuple]:
    """One colour per label, in bank order (the same in every picture of a session)."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


# ---------------------------------------------------------------- the app


def world_of(model):
    """The generated world (`icpt.world.World`) the model's backbone was trained on, if its folder records one."""
    backbone = model.config.base_model_name_or_path
    if not backbone or not (Path(backbone) / "world.json").is_file():
        return None
    return world_for(Path(backbone))


def as_label(name: str) -> str:
    """The label a user means: `bo` and `<bo>` both give `<bo>` (whether it is a valid label, the processor checks)."""
    name = (name or "").strip()
    if not name:
        raise ICPTInputError("Give the concept a name, like <bo> (one word; the brackets are added if missing).")
    return name if name.startswith("<") and name.endswith(">") else f"<{name}>"


@contextlib.contextmanager
def uploaded_name(path):
    """Errors about an uploaded file name it as the user did (its file name), not by the server's upload folder."""
    try:
        yield
    except (ValueError, OSError) as error:
        path = str(path)
        message = str(error).replace(f" {path!r}", "").replace(path, Path(path).name)
        raise ICPTInputError(message) from None


def shown_errors(outputs: int):
    """
    Decorator for an event handler whose first output is a status line in plain text (shown escaped: labels look
    like HTML tags). Bad input (`ValueError`, which covers `ICPTInputError`, or `OSError`) becomes an error message
    in the status line, and every other output is left as it was: the app keeps running.
    """
    def decorate(handler):
        @functools.wraps(handler)
        def wrapped(*args):
            try:
                status, *rest = handler(*args)
            except (ValueError, OSError) as error:
                message = html.escape(" ".join(str(error).split()))
                return (f'<span class="error-text">Error: {message}</span>',) + (gr.skip(),) * (outputs - 1)
            return (html.escape(status), *rest)
        return wrapped
    return decorate


class ConceptApp:
    """
    The app's work, apart from the page: one model and processor for every session, and handlers that take a
    session's `Session` and return a new one. `build()` lays out the page.

    Args:
        model: an `ICPTForConditionalGeneration` (in eval mode).
        processor: its `ICPTProcessor`.
        max_new_tokens: longest answer.
        title: the page's heading.
        model_name: what the page calls the model (default: the backbone its config names).
    """

    def __init__(self, model, processor, max_new_tokens: int = 24, title: str = "ICPT: your concepts, in a frozen VLM",
                 model_name: str | None = None):
        self.model, self.processor = model, processor
        self.max_new_tokens = max_new_tokens
        self.title = title
        self.model_name = model_name or f"`{model.config.base_model_name_or_path}` + an ICPT projector"
        self.world = world_of(model)

    @classmethod
    def from_pretrained(cls, model=DEFAULT_MODEL, backbone=None, device=None, **kwargs) -> "ConceptApp":
        """The app on an ICPT checkpoint (default: the embedded one), loaded with `icpt.inference.load_model`."""
        if Path(model).resolve() == DEFAULT_MODEL:
            kwargs.setdefault("model_name", "the embedded default (a 4.4 M-parameter LLaVA-class model trained on the "
                                            "project's generated world, with its ICPT projector)")
        return cls(load_model(model, backbone, device), ICPTProcessor.from_pretrained(str(model)), **kwargs)

    # ------------------------------------------------------------ handlers (state in, state out)

    def add_concept(self, session: Session, files, name: str) -> tuple[Session, str]:
        """Encode a concept from uploaded photos (`files`: paths) and a name; returns the new session and a status."""
        label = as_label(name)
        bank = session.bank
        if bank is not None and label in bank:
            raise ICPTInputError(f"{label} is already a concept of this bank: choose another name, or remove all concepts first.")
        photos = []
        for path in [getattr(f, "name", f) for f in (files or [])]:
            with uploaded_name(path):
                photos.append(load_image(path, f"photo {Path(path).name} of {label}"))
        started = time.perf_counter()
        references = self.processor.prepare_references({label: photos}).to(self.model.device)
        concept = self.model.encode_concepts(**references)
        seconds = time.perf_counter() - started
        weights = concept_attention(self.model, references, concept.lengths)[0]
        crops = getattr(getattr(self.processor, "image_processor", None), "do_center_crop", False)
        session = Session(bank=concept if bank is None else bank.merge(concept),
                          pictures={**session.pictures, label: attention_picture(photos, weights, center_crop=crops)},
                          photos={**session.photos, label: len(photos)})
        status = (f"Added {label}: {len(photos)} photo(s) -> {concept.lengths[label]} prompt tokens, "
                  f"encoded in {seconds * 1000:.0f} ms.")
        return session, status

    def ask(self, session: Session, image, question: str) -> tuple[str, str, Image.Image | None, str]:
        """The answer to `question` about `image`, with a table and a picture of what entered the prompt, and a status."""
        if image is None:
            raise ICPTInputError("Upload a photo to ask about.")
        if not (question or "").strip():
            raise ICPTInputError("Type a question, naming your concepts by label, e.g. Is <bo> in this photo?")
        # (retrieval, "who is in this photo?", would pick the bank's concepts for a question that names none here)
        content = [{"type": "image"}, {"type": "text", "text": question}]
        # the prompt `answer` builds, built again to show it (cheap: text and one photo); a bad question fails here
        inputs = self.processor(messages=[{"role": "user", "content": content}], images=[[image]], concepts=session.bank)
        reply = answer(self.model, self.processor, question, image, session.bank, self.max_new_tokens)
        runs, used = prompt_parts(self.model, inputs)
        lengths = session.bank.lengths if session.bank is not None else {}
        if used:
            table = "| concept in the prompt | prompt tokens |\n|---|---|\n" + "".join(
                f"| `{label}` | {lengths[label]} |\n" for label in used)
        else:
            table = "No concept entered the prompt: the question names none of this bank's concepts."
        table += f"\n\nThe whole prompt: {sum(tokens for _, tokens in runs)} tokens."
        bank_labels = session.bank.labels if session.bank is not None else []
        picture = prompt_picture(runs, concept_colours(bank_labels))
        return f"Answered ({len(used)} concept(s) in the prompt).", reply, picture, table

    def save_bank(self, session: Session) -> tuple[str, str]:
        """Write the session's bank to a new file to download; returns a status and the file's path."""
        if session.bank is None:
            raise ICPTInputError("The bank is empty: add a concept first.")
        path = Path(tempfile.mkdtemp(prefix="icpt-bank-")) / "concepts.safetensors"
        session.bank.save(path)
        return f"Saved {len(session.bank)} concept(s): download concepts.safetensors below.", str(path)

    def load_bank(self, session: Session, file) -> tuple[Session, str]:
        """Add the concepts of a bank file (from `icpt encode` or this app) to the session's bank."""
        if file is None:
            raise ICPTInputError("Choose a bank file (.safetensors, from `icpt encode` or the Save button) to load.")
        path = getattr(file, "name", file)
        with uploaded_name(path):
            loaded = ConceptBank.load(path)
        self.model._check_bank(loaded)  # a bank of another backbone fails here, not at the first question
        loaded = loaded.to(self.model.device)  # beside the session's concepts, which the model encoded there
        clash = sorted(set(loaded.labels) & set(session.bank.labels if session.bank is not None else []))
        if clash:
            raise ICPTInputError(f"{clash} of this bank file are already concepts here: remove all concepts first, "
                                 "or load another bank.")
        bank = loaded if session.bank is None else session.bank.merge(loaded)
        return dataclasses.replace(session, bank=bank), f"Loaded {len(loaded)} concept(s): {', '.join(loaded.labels)}."

    def example(self, session: Session) -> tuple[str, list[str], str, Image.Image, str]:
        """
        Photos to try a model trained on the generated world (`icpt.world`) with: three photos of an identity it never
        saw in training, a name this session does not use yet, and a new photo (in an environment no reference shows)
        of it beside another identity, with a question. Returns a status and the values of those inputs.
        """
        if self.world is None:
            raise ICPTInputError("This model records no generated world to draw example photos from: upload your own.")
        rng = np.random.default_rng()
        held_out = self.world.split("held_out")
        identity, other = (int(i) for i in rng.choice(held_out, size=2, replace=False))
        taken = set(session.bank.labels) if session.bank is not None else set()
        names = (f"<{word}{n or ''}>" for n in itertools.count() for word in EXAMPLE_NAMES)
        label = next(name for name in names if name not in taken)
        set_a, set_b = self.world.environment_set("A"), self.world.environment_set("B")
        folder = Path(tempfile.mkdtemp(prefix="icpt-example-"))
        paths = []
        for i in range(3):
            paths.append(str(folder / f"{label.strip('<>')}_{i + 1}.png"))
            self.world.render([identity], set_a[int(rng.integers(len(set_a)))], rng)[0].save(paths[-1])
        query = self.world.render([identity, other], set_b[int(rng.integers(len(set_b)))], rng)[0]
        status = (f"Example: three photos of {self.world.identities[identity].description} (never seen in training). "
                  "Add it, then ask.")
        return status, paths, label, query, f"Is {label} in this photo?"

    def clear(self, session: Session) -> tuple[Session, str]:
        """An empty session."""
        return Session(), "Removed all concepts."

    # ------------------------------------------------------------ views of a session

    @staticmethod
    def concept_table(session: Session) -> str:
        """The session's concepts as a Markdown table."""
        bank = session.bank
        if bank is None:
            return "No concepts yet: add one from a few photos, or load a bank file."
        lengths = bank.lengths
        rows = ""
        for label, complexity in zip(bank.labels, bank.complexity.tolist()):
            # NaN: not measured, a projector whose prompt length is fixed does not use it
            complexity = "n/a (fixed length)" if math.isnan(complexity) else f"{complexity:.2f}"
            rows += f"| `{label}` | {session.photos.get(label, 'from a bank file')} | {lengths[label]} | {complexity} |\n"
        return "| concept | photos | prompt tokens | visual complexity |\n|---|---|---|---|\n" + rows

    @staticmethod
    def concept_pictures(session: Session) -> Image.Image | None:
        """
        One picture of every concept added from photos, one under the other: its label, its photos, and under them
        the same photos lit where its prompt rows read. `None` when no concept has photos (e.g. all came from a bank).
        """
        bank = session.bank
        labels = [label for label in (bank.labels if bank is not None else []) if label in session.pictures]
        if not labels:
            return None
        font = ImageFont.load_default(size=16)
        parts = [session.pictures[label] for label in labels]
        sheet = Image.new("RGB", (max(p.width for p in parts), sum(p.height + 28 for p in parts)), "white")
        draw, y = ImageDraw.Draw(sheet), 0
        for label, part in zip(labels, parts):
            draw.text((8, y + 6), f"{label}: {session.photos[label]} photo(s), {bank.lengths[label]} prompt tokens",
                      fill="black", font=font)
            sheet.paste(part, (0, y + 28))
            y += part.height + 28
        return sheet

    # ------------------------------------------------------------ the page

    def build(self):
        """The Gradio page (a `gr.Blocks`); `.launch()` it, or use `ConceptApp.launch`."""
        config = self.model.config
        with gr.Blocks(title="ICPT") as page:
            session = gr.State(Session())
            gr.Markdown(f"# {self.title}\n"
                        "Add your concepts from a few photos each, then ask about a new photo, naming them by label "
                        f"(`<bo>`). Model: {self.model_name}; up to "
                        f"{config.max_references} photos and {config.max_prompt_length} prompt tokens per concept. "
                        "Your photos stay in this session; a saved bank holds vectors, never photos.")
            status = gr.Markdown("Ready.", elem_id=STATUS_ID)
            example = gr.Button("Fill in example photos (a new identity of the world this model was trained on)",
                                size="sm", visible=self.world is not None, elem_id="icpt-example")
            with gr.Row():
                with gr.Column():
                    gr.Markdown("## 1. Add a concept")
                    photos = gr.File(label="Photos of the concept", file_count="multiple", file_types=["image"],
                                     height=140, elem_id="icpt-photos")
                    with gr.Row():
                        name = gr.Textbox(label="Name (label)", placeholder="<bo>", scale=2, elem_id="icpt-name")
                        add = gr.Button("Add concept", variant="primary", scale=1, elem_id="icpt-add")
                    gr.Markdown("## Your concepts")
                    concepts = gr.Markdown(self.concept_table(Session()), elem_id=CONCEPTS_ID)
                    gr.Markdown("Each concept's photos; below them, lit, the patches its prompt rows read:")
                    pictures = gr.Image(type="pil", interactive=False, show_label=False, elem_id=PICTURES_ID)
                    with gr.Accordion("Save or load a bank file", open=True):
                        with gr.Row():
                            save = gr.Button("Save bank", elem_id="icpt-save")
                            load = gr.Button("Load bank", elem_id="icpt-load")
                            clear = gr.Button("Remove all concepts", variant="stop", elem_id="icpt-clear")
                        with gr.Row():
                            saved = gr.File(label="Bank file to download", interactive=False, height=100,
                                            elem_id="icpt-saved")
                            bank_file = gr.File(label="Bank file to load (.safetensors)", file_types=[".safetensors"],
                                                height=100, elem_id="icpt-bank-file")
                with gr.Column():
                    gr.Markdown("## 2. Ask about a photo")
                    image = gr.Image(label="Photo", type="pil", sources=["upload", "clipboard"], height=240,
                                     elem_id="icpt-image")
                    question = gr.Textbox(label="Question", placeholder="Is <bo> in this photo?", elem_id="icpt-question")
                    ask = gr.Button("Ask", variant="primary", elem_id="icpt-ask")
                    reply = gr.Textbox(label="Answer", interactive=False, elem_id=ANSWER_ID)
                    used = gr.Markdown(elem_id=PROMPT_ID)
                    prompt = gr.Image(label="What entered the prompt", type="pil", interactive=False, height=200,
                                      elem_id="icpt-prompt-picture")

            def refreshed(handler, *cleared):
                # a handler that changes the session: then show its concepts and pictures again, and empty the
                # `cleared` inputs it used (on an error they keep their content, to be fixed)
                @shown_errors(outputs=4 + len(cleared))
                def run(current, *args):
                    new, message = handler(current, *args)
                    return (message, new, self.concept_table(new), self.concept_pictures(new)) + (None,) * len(cleared)
                return run, [status, session, concepts, pictures, *cleared]

            for button, handler, inputs, cleared in ((add, self.add_concept, [photos, name], [photos, name]),
                                                     (load, self.load_bank, [bank_file], [bank_file]),
                                                     (clear, self.clear, [], [])):
                run, outputs = refreshed(handler, *cleared)
                button.click(run, [session, *inputs], outputs)
            example.click(shown_errors(outputs=5)(self.example), [session], [status, photos, name, image, question])
            save.click(shown_errors(outputs=2)(self.save_bank), [session], [status, saved])
            ask.click(shown_errors(outputs=4)(self.ask), [session, image, question], [status, reply, prompt, used])
            question.submit(shown_errors(outputs=4)(self.ask), [session, image, question], [status, reply, prompt, used])
        return page

    def launch(self, host: str = "127.0.0.1", port: int | None = None, **kwargs):
        """Build the page and serve it (no share link; `kwargs` go to `gr.Blocks.launch`)."""
        return self.build().launch(server_name=host, server_port=port, share=False, css=CSS, **kwargs)
