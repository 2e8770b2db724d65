"""The episode: the one data contract shared by training, evaluation and the dataset loaders.

An episode is a handful of personal concepts (each a label and its reference photos), one
query image (or none, for a text-only question) and one question with its answer. Every
source of data in the project -- the generated world, the Yo'LLaVA / MyVLM / MC-LLaVA
loaders -- produces rows of this schema, and every consumer (the training collator, the
evaluation harness) reads only this schema.

Example:

```python
>>> from datasets import Dataset
>>> from icpt.episodes import EPISODE_FEATURES
>>> row = {
...     "concepts": [{"name": "<bo>", "references": ["bo/0.png", "bo/1.png"], "masks": [], "description": None}],
...     "image": "query.png",
...     "question": "Can you see <bo> in this photo? Answer with a single word or phrase.",
...     "answer": "Yes",
...     "task": "recognition",
...     "target": "<bo>",
...     "options": [],
...     "present": ["<bo>"],
...     "tags": [],
... }
>>> ds = Dataset.from_list([row], features=EPISODE_FEATURES)  # doctest: +SKIP
```
"""

from datasets import Features, Image, List, Value

# What each question type asks; the harness scores each with its own metric.
TASKS = (
    "recognition",  # "Can you see <c> in this photo?" -> Yes / No
    "presence",  # "Which of <a>, <b> are in this photo?" -> names, comma separated
    "vqa",  # two-option question about the query image -> the correct option text
    "text_qa",  # two-option question with no image -> the correct option text
    "attribute",  # "What colour is <c>?" -> a short phrase
    "caption",  # "Write a caption that names ..." -> free text scored by name recall
)

# Tags mark the evaluation splits that are reported separately.
TAGS = (
    "environment_shift",  # the query's environment set is disjoint from the references'
    "look_alike",  # the query shows a look-alike of the target that differs in one detail
    "multi_concept",  # more than one concept appears in the query image
)

EPISODE_FEATURES = Features(
    {
        # label (written like "<bo>"), reference photos, optional masks aligned with them, and an
        # optional one-sentence description (for the text-description baseline; None if unknown)
        "concepts": List(
            {
                "name": Value("string"),
                "references": List(Image()),
                "masks": List(Image()),
                "description": Value("string"),
            }
        ),
        "image": Image(),  # the query image; None for text-only questions
        "question": Value("string"),
        "answer": Value("string"),
        "task": Value("string"),  # one of TASKS
        "target": Value("string"),  # the concept the question is about ("" if several or none)
        "options": List(Value("string")),  # answer options for vqa/text_qa, else empty
        "present": List(Value("string")),  # concept names visible in the query image
        "tags": List(Value("string")),  # subset of TAGS
    }
)
