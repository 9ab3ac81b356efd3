"""What an install gets: the versions constraints.txt pins (the ones CI proves), and what each make target sets up."""

from __future__ import annotations

import json
import os
import re
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

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


def test_colab_installs_with_the_pins():
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        install = ["".join(cell["source"]) for cell in cells if "pip install" in "".join(cell["source"])]
        assert len(install) == 1, f"{path.name}: one install cell"
        pins_url = re.search(r'^PINS = "(\S+)"$', install[0], re.M)
        assert pins_url and pins_url[1].endswith("/main/constraints.txt"), f"{path.name}: where are the pins?"
        command = next(line for line in install[0].splitlines() if "pip install" in line)
        assert " -c {PINS} " in command, f"{path.name} installs without the pins"
        assert "torch" not in command, f"{path.name} must keep Colab's own torch"


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
