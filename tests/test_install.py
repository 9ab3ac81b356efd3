"""What an install gets: the versions constraints.txt pins (the ones CI proves), locally and in Colab, and a package
that works away from this checkout (no `tools/`, no `benchmarks/`, no lessons)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import distribution, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "2_preference_alignment" / "notebooks").glob("*.ipynb"))
MODULES = sorted(p.stem for p in (ROOT / "course_utils").glob("*.py") if p.stem != "__init__")


def pins() -> dict[str, str]:
    """constraints.txt as {canonical name: version}."""
    lines = (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    found = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    assert all(str(r.specifier).startswith("==") for r in found), "constraints.txt pins exact versions only"
    return {canonicalize_name(r.name): str(r.specifier).removeprefix("==") for r in found}


def requirements(name: str) -> list[Requirement]:
    """The requirements a requirements file lists."""
    lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
    return [Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip()]


def test_every_requirement_is_pinned_within_its_bounds():
    pinned = pins()
    for requirement in requirements("requirements.txt") + requirements("requirements-dev.txt"):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is required but constraints.txt does not pin it"
        assert requirement.specifier.contains(pinned[name]), f"the pin {name}=={pinned[name]} breaks {requirement}"
    assert "torch" not in pinned, "torch is left to the platform (Colab brings its own): do not pin it"


COURSE_PACKAGES = ("trl", "transformers", "datasets", "peft", "accelerate", "tokenizers")
# Older releases of what Colab ships (google-colab pins pandas and requests itself): the install must keep them.
COLAB_STACK = {"pandas": "2.2.2", "requests": "2.32.4", "numpy": "2.0.2", "matplotlib": "3.10.0"}


def colab_install(path: Path) -> tuple[str, dict[str, str]]:
    """The notebook's Colab install cell: its pip command and the versions it pins."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    install = ["".join(cell["source"]) for cell in cells if "pip install" in "".join(cell["source"])]
    assert len(install) == 1, f"{path.name}: one install cell"
    pinned = re.search(r'^PINS = "([^"]+)"$', install[0], re.M)
    assert pinned, f"{path.name}: the install cell names no PINS"
    command = next(line.strip() for line in install[0].splitlines() if "pip install" in line)
    return command, dict(pin.split("==") for pin in pinned[1].split())


def test_colab_pins_the_course_packages_and_nothing_of_colabs_own():
    for path in NOTEBOOKS:
        command, pinned = colab_install(path)
        assert pinned == {name: pins()[name] for name in COURSE_PACKAGES}, f"{path.name}: not constraints.txt's pins"
        assert " -c " not in command and "constraints" not in command, f"{path.name} installs Colab's stack too"
        assert "torch" not in command, f"{path.name} must keep Colab's own torch"


# In the Colab venv, from elsewhere: the versions installed, every module imported from the install, its data, a
# helper run.
SMOKE = """
import importlib, importlib.metadata, json, sys
import course_utils
from course_utils import data, evaluation, sources
modules = [course_utils] + [importlib.import_module(f"course_utils.{name}") for name in json.loads(sys.argv[1])]
before = {"preference_accuracy": 0.5, "judged_score": None, "decline_rate": 0.1, "repetition_rate": 0.0}
print(json.dumps({
    "versions": {name: importlib.metadata.version(name) for name in json.loads(sys.argv[2])},
    "files": [module.__file__ for module in modules],
    "rows": [len(data.load_bundled("preference_test")), *map(len, sources.harmless_base().values())],
    "table": evaluation.before_after(before, {**before, "preference_accuracy": 0.9}).to_string(),
}))
"""


@pytest.mark.slow
def test_the_colab_install_leaves_colabs_stack_alone(tmp_path):
    """Into a Python that holds older releases of Colab's own packages (and a torch, as Colab has), the install cell
    installs the course and changes none of them; the course's helpers then import and run with them."""
    venv = tmp_path / "colab"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # Colab's torch is this one, linked in rather than installed again (700 MB): pip sees it on the venv's path.
    torch_dist, shelf = distribution("torch"), tmp_path / "colab-torch"
    shelf.mkdir()
    for top in {file.parts[0] for file in torch_dist.files} - {".."}:  # torch, torchgen, functorch, its metadata
        (shelf / top).symlink_to(torch_dist.locate_file(top))
    next((venv / "lib").glob("python*/site-packages")).joinpath("colab-torch.pth").write_text(str(shelf))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, *(f"{k}=={v}" for k, v in COLAB_STACK.items())], check=True)
    command, pinned = colab_install(NOTEBOOKS[0])
    assert command.startswith('!pip install -q "{COURSE}" {PINS}'), command  # what the lines below run
    subprocess.run([*pip, str(ROOT), *(f"{name}=={v}" for name, v in pinned.items())], check=True, timeout=900)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "datasets")}
    smoke = [venv / "bin" / "python", "-c", SMOKE, json.dumps(MODULES), json.dumps([*COLAB_STACK, "torch", *pinned])]
    run = subprocess.run(smoke, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    colab_stack = {**COLAB_STACK, "torch": version("torch")}
    assert {k: report["versions"][k] for k in colab_stack} == colab_stack, "the install changed Colab's own packages"
    assert {k: report["versions"][k] for k in pinned} == pinned
    for file in report["files"]:
        assert Path(file).resolve().is_relative_to(venv.resolve()), f"{file} is not the installed copy"
    assert min(report["rows"]) > 0, "the package's data (the offline world, harmless-base) did not ship with it"
    assert "0.9" in report["table"]
