"""The ICPT web app as a Hugging Face Space (the `app_file` of this folder's README.md).

In a clone of the repository: `python space/app.py` (or `icpt serve`). In a Space built by `space/build_space.sh`, the
packages sit beside this file. `ICPT_MODEL` picks another ICPT checkpoint (a folder or a Hub repo id).
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the packages: beside this file in the Space, one folder up in a clone
for folder in (HERE, HERE.parent):
    if (folder / "icpt" / "serve.py").is_file():
        sys.path.insert(0, str(folder))
        break

from icpt.app import CSS, DEFAULT_MODEL, ConceptApp  # noqa: E402

app = ConceptApp.from_pretrained(os.environ.get("ICPT_MODEL", DEFAULT_MODEL))
demo = app.build()

if __name__ == "__main__":
    # a Space sets GRADIO_SERVER_NAME / GRADIO_SERVER_PORT; locally this is http://127.0.0.1:7860
    demo.launch(css=CSS)
