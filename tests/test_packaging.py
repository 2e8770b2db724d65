"""What a wheel of the package holds: pyproject.toml's explicit package list and package data against the tree.

An editable install (the bootstrap, CI) imports any folder of the checkout, so a package left out of the list
only fails for users who `pip install` the wheel; these checks catch it without building one.
"""

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def package_folder(name: str) -> Path:
    """The folder a package name maps to, through `package-dir` where it names one."""
    mapped = SETUPTOOLS.get("package-dir", {})
    if name in mapped:
        return REPO / mapped[name]
    parent, _, last = name.rpartition(".")
    return package_folder(parent) / last if parent else REPO / name


def test_every_python_package_is_listed():
    """Each folder with an __init__.py under a listed top-level package is listed too, and each listed one exists
    (`icpt.hub_cards` is a folder of data without an __init__.py)."""
    listed = set(SETUPTOOLS["packages"])
    tops = {name for name in listed if "." not in name}
    found = set()
    for top in tops:
        for init in package_folder(top).rglob("__init__.py"):
            found.add(".".join((top, *init.parent.relative_to(package_folder(top)).parts)))
    assert sorted(found - listed) == [], "add these packages to [tool.setuptools] packages in pyproject.toml"
    assert sorted(name for name in listed if not package_folder(name).is_dir()) == []


def test_package_data_globs_match_files():
    """Every package-data pattern picks up at least one file: the shipped checkpoints, the cards, the metrics."""
    empty = [f"{package}: {pattern}" for package, patterns in SETUPTOOLS["package-data"].items()
             for pattern in patterns if not any(p.is_file() for p in package_folder(package).glob(pattern))]
    assert empty == []
