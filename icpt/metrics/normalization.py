"""Answer normalization shared by the project's metrics (the SQuAD rule).

Example:

```python
>>> from icpt.metrics.normalization import normalize_answer
>>> normalize_answer("  The Shiba-Inu!")
'shibainu'
>>> normalize_answer("Yes, it is.")
'yes it is'
```
"""

import re
import string


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the and collapse whitespace (SQuAD's rule)."""
    text = text.lower()
    text = "".join(character for character in text if character not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def group_indices(groups, count: int) -> dict:
    """`{group: [indices]}` of `count` predictions, in first-seen order; one group name per prediction."""
    if len(groups) != count:
        raise ValueError(
            f"`groups` has {len(groups)} entries but there are {count} predictions: give one group name per prediction."
        )
    members = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    return members
