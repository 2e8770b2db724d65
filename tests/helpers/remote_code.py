"""Loading a saved checkpoint as remote code (`trust_remote_code=True`) in a child process that cannot import this
project: the preamble of its script."""

import site
import textwrap
from pathlib import Path


def without_project_paths() -> str:
    """Preamble for the child: the venv's site-packages, without the editable install of this project."""
    packages = [p for p in site.getsitepackages() if Path(p).is_dir()]
    return textwrap.dedent(f"""
        import sys
        sys.path[:] = [p for p in sys.path if p] + {packages!r}
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()
                             and "editable" not in type(f).__name__.lower()]
    """)
