"""`course_utils` as learners get it: installed (not editable) into a fresh environment, away from this checkout.

What a Colab learner installs is the package alone: no `tools/`, no `benchmarks/`, no lessons. So every module must
import from the installed copy, and its data (the offline world, the shipped harmless-base rows) must come with it.
To stay fast and offline, the fresh venv reuses this interpreter's dependencies (torch, transformers, TRL) through a
`.pth` file instead of installing them again. The wheel is built by this interpreter (which has setuptools) from a
copy of the package's files, so nothing is written into the checkout, then installed into the fresh venv before the
`.pth` file exists, so pip there sees an empty environment.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

import course_utils

ROOT = Path(__file__).resolve().parents[1]
# Every module of the package, as the package docstring lists them. A new module fails the test until it is added
# here and to that docstring; a module that needs the repository's folders fails when imported from the install.
MODULES = [
    "checks",
    "cost",
    "data",
    "evaluation",
    "losses",
    "plotting",
    "profiles",
    "refusal",
    "sources",
    "tiny_model",
    "training",
    "world",
]
# What makes the package: its sources (package data included) and what pyproject.toml reads when it builds.
BUILD_FILES = ["pyproject.toml", "requirements.txt", "README.md"]

CHECK = textwrap.dedent(
    """
    import importlib, json, sys
    from pathlib import Path

    import course_utils

    package = Path(course_utils.__file__).parent
    found = sorted(p.stem for p in package.glob("*.py") if p.stem != "__init__")
    files = {name: importlib.import_module(f"course_utils.{name}").__file__ for name in json.loads(sys.argv[1])}
    files["__init__"] = course_utils.__file__

    from course_utils import data, sources

    bundled = data.load_bundled("preference_test")
    splits = sources.harmless_base()
    print(json.dumps({
        "found": found,
        "files": files,
        "bundled_rows": len(bundled),
        "splits": {name: len(split) for name, split in splits.items()},
    }))
    """
)


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_package_docstring_names_every_module():
    found = sorted(p.stem for p in (ROOT / "course_utils").glob("*.py") if p.stem != "__init__")
    assert found == MODULES, "a module was added or removed: update MODULES and the package docstring"
    lines = course_utils.__doc__.splitlines()
    for name in MODULES:
        assert sum(line.startswith(f"- `{name}`: ") for line in lines) == 1, f"one docstring line for `{name}`"


@pytest.mark.slow
def test_installed_package_imports_every_module_and_reads_its_data_outside_the_checkout(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(ROOT / "course_utils", source / "course_utils", ignore=shutil.ignore_patterns("__pycache__"))
    for name in BUILD_FILES:
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-cache-dir"]
    offline = ["--no-deps", "--no-index"]
    wheels = tmp_path / "wheels"
    run([*pip, "wheel", *offline, "--no-build-isolation", "--wheel-dir", str(wheels), str(source)])
    (wheel,) = wheels.glob("course_utils-*.whl")

    fresh = tmp_path / "fresh"
    run([sys.executable, "-m", "venv", "--without-pip", str(fresh)])
    python = fresh / "bin" / "python"
    run([*pip, "--python", str(python), "install", *offline, str(wheel)])
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "_course_dependencies.pth").write_text("".join(f"{path}\n" for path in ours))

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "datasets")}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = run([str(python), "-c", CHECK, json.dumps(MODULES)], cwd=elsewhere, env=env)
    report = json.loads(out.stdout.strip().splitlines()[-1])

    assert report["found"] == MODULES, "the installed package holds other modules than those imported here"
    for name, file in report["files"].items():
        path = Path(file).resolve()
        assert path.is_relative_to(fresh.resolve()), f"course_utils.{name} came from {path}, not the fresh install"
        assert not path.is_relative_to(ROOT), f"course_utils.{name} came from the checkout"
    assert report["bundled_rows"] > 0, "the offline world's data did not ship with the package"
    assert set(report["splits"]) == {"train", "test"} and min(report["splits"].values()) > 0


# Scripts and benchmarks write JSON and take what they share from the package; `tools/figures.py` renders it.
NO_TOOLS = ["benchmarks", "2_preference_alignment/scripts"]


def imports_tools(path: Path) -> list[int]:
    """The lines of `path` that import the repository's `tools/` (`import tools`, `from tools[.x] import ...`)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(name == "tools" or name.startswith("tools.") for name in names):
            lines.append(node.lineno)
    return lines


def test_scripts_and_benchmarks_do_not_import_tools():
    files = [path for folder in NO_TOOLS for path in sorted((ROOT / folder).rglob("*.py"))]
    assert files, "no scripts found: were the folders moved?"
    found = {str(path.relative_to(ROOT)): lines for path in files if (lines := imports_tools(path))}
    assert not found, f"these import tools/ (move what they need into course_utils): {found}"
