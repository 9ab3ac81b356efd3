"""What an install gets: the versions constraints.txt pins (the ones CI proves), and what each make target sets up."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "2_preference_alignment" / "notebooks").glob("*.ipynb"))


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


def test_this_environment_has_the_pinned_versions():
    """The tests run against what a fresh install gets: a drifted environment fails here, not somewhere later."""
    drifted = []
    for name, pinned in pins().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            drifted.append(f"{name}: pinned {pinned}, not installed")
            continue
        if installed != pinned:
            drifted.append(f"{name}: pinned {pinned}, installed {installed}")
    assert not drifted, "run `make setup` (or change constraints.txt on purpose):\n" + "\n".join(drifted)


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


@pytest.mark.slow
def test_the_colab_install_leaves_colabs_stack_alone(tmp_path):
    """Into a Python that holds older releases of Colab's own packages (and a torch, as Colab has), the install cell
    installs the course and changes none of them; the course's helpers then import and run with them."""
    venv = tmp_path / "colab"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run(
        [*pip, f"torch=={version('torch').split('+')[0]}", *(f"{k}=={v}" for k, v in COLAB_STACK.items())], check=True
    )
    command, pinned = colab_install(NOTEBOOKS[0])
    assert command.startswith('!pip install -q "{COURSE}" {PINS}'), command  # what the lines below run
    subprocess.run([*pip, str(ROOT), *(f"{name}=={v}" for name, v in pinned.items())], check=True, timeout=900)
    check = "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in %r}))" % [
        *COLAB_STACK,
        *pinned,
    ]
    after = json.loads(subprocess.run([venv / "bin" / "python", "-c", check], capture_output=True, text=True).stdout)
    assert {k: after[k] for k in COLAB_STACK} == COLAB_STACK, "the install changed Colab's own packages"
    assert {k: after[k] for k in pinned} == pinned
    smoke = (
        "from course_utils import checks, data, evaluation, plotting, training; "
        "before = {'preference_accuracy': 0.5, 'judged_score': None, 'decline_rate': 0.1, 'repetition_rate': 0.0}; "
        "print(evaluation.before_after(before, {**before, 'preference_accuracy': 0.9}).to_string())"
    )
    run = subprocess.run([venv / "bin" / "python", "-c", smoke], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0 and "0.9" in run.stdout, run.stderr[-2000:]


def make(*args: str, env: dict | None = None) -> str:
    """What `make` prints for these arguments, run in the repository root."""
    run = subprocess.run(["make", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_setup_installs_the_pins_and_a_cpu_torch_with_a_fallback():
    commands = re.sub(r"\\\n\s*", "", make("-n", "setup", "VENV=/nonexistent/venv"))  # one line per command
    torch_line = next(line for line in commands.splitlines() if "torch==" in line)
    # The CPU build from PyTorch's own index first; PyPI's build (CUDA on Linux) only if that index is out of reach.
    assert re.search(r"--index-url https://download\.pytorch\.org/whl/cpu \"?torch==[\d.]+\"? \|\|", torch_line)
    assert re.search(r"\|\| \S+/pip install -q \"?torch==[\d.]+\"?$", torch_line)
    assert re.search(r"pip install -q -c constraints\.txt -r requirements\.txt", commands)


def test_make_leaves_the_profile_to_the_notebook():
    """`make lab` on a GPU machine must let the notebook choose `hub`: only `make exercise` asks for offline."""
    env = {k: v for k, v in os.environ.items() if k != "COURSE_PROFILE"}
    probe = 'probe: ; @echo "profile=[$$COURSE_PROFILE]"'
    assert make("-s", f"--eval={probe}", "probe", env=env).strip() == "profile=[]"
    assert "COURSE_PROFILE=$${COURSE_PROFILE:-offline}" not in make("-n", "exercise", "VENV=/nonexistent/venv")
    assert "COURSE_PROFILE=${COURSE_PROFILE:-offline}" in make("-n", "exercise", "VENV=/nonexistent/venv")
