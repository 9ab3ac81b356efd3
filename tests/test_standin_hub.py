"""The stand-in Hub (tests/standin_hub.py): its HTTP answers, and the real libraries downloading through it.

The library tests run in subprocesses because huggingface_hub reads HF_ENDPOINT when it is imported; each asserts
that the server saw no request it does not serve, so a library release that asks for something new shows up here.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from datasets import Dataset
from standin_hub import COMMIT, serve  # pytest puts tests/ (no __init__.py) on sys.path

from course_utils.tiny_model import build_tiny_model

HH_RLHF = Path(__file__).parents[1] / "course_utils" / "hh_rlhf" / "harmless-base-test.jsonl.gz"
SPLIT_ROWS = {"train": 4, "test": 3}  # hh-rlhf rows per split in the stand-in repo
SUBPROCESS_TIMEOUT_S = 120
# Variables that would send the libraries offline or to another cache than the test's HF_HOME.
CLEARED_ENV = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_DATASETS_CACHE",
    "TRANSFORMERS_CACHE",
    "HF_TOKEN",
    "CI",  # TRL sends no telemetry when CI is set: a learner's machine does not set it
)


def write_hh_rlhf(repo: Path) -> None:
    """Anthropic/hh-rlhf's layout: harmless-base/{train,test}.jsonl.gz with chosen/rejected rows."""
    with gzip.open(HH_RLHF, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f][: sum(SPLIT_ROWS.values())]
    (repo / "harmless-base").mkdir(parents=True)
    start = 0
    for split, count in SPLIT_ROWS.items():
        pairs = [{"chosen": r["chosen"], "rejected": r["rejected"]} for r in rows[start : start + count]]
        with gzip.open(repo / "harmless-base" / f"{split}.jsonl.gz", "wt", encoding="utf-8") as f:
            f.writelines(json.dumps(pair) + "\n" for pair in pairs)
        start += count


def write_ultrafeedback(repo: Path) -> None:
    """HuggingFaceH4/ultrafeedback_binarized's layout: one parquet file per split under data/."""
    (repo / "data").mkdir(parents=True)
    for split in ("train_prefs", "test_prefs"):
        rows = [
            {
                "prompt": f"{split} question {i}",  # differs per split, so the two files are two blobs
                "chosen": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "kind"}],
                "rejected": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "rude"}],
            }
            for i in range(5)
        ]
        Dataset.from_list(rows).to_parquet(repo / "data" / f"{split}-00000-of-00001.parquet")


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory) -> Path:
    """A stand-in Hub folder: the tiny model as org/tiny, and small copies of the two course data sets."""
    root = tmp_path_factory.mktemp("hub")
    build_tiny_model(root / "models" / "org" / "tiny", seed=0)
    write_hh_rlhf(root / "datasets" / "Anthropic" / "hh-rlhf")
    write_ultrafeedback(root / "datasets" / "HuggingFaceH4" / "ultrafeedback_binarized")
    return root


def run_python(code: str, endpoint: str, hf_home: Path, cwd: Path, offline: bool = False) -> str:
    """Run `code` in a fresh interpreter pointed at the stand-in Hub; its stdout, or a test failure with its stderr."""
    env = {key: value for key, value in os.environ.items() if key not in CLEARED_ENV}
    env |= {"HF_ENDPOINT": endpoint, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env |= {"HF_HUB_OFFLINE": "1"} if offline else {}
    try:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=env,
            cwd=cwd,  # a folder without ./org/tiny, so that the Hub id cannot be read as a local path
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"the subprocess hung for {SUBPROCESS_TIMEOUT_S} s against the stand-in Hub:\n{error.stderr}")
    if done.returncode != 0:
        pytest.fail(f"the subprocess failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return done.stdout


def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    """Status, headers and body of one request, errors included."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_file_headers_and_ranges(hub_root):
    """A file comes with the headers huggingface_hub checks, and a Range gets exactly its bytes."""
    data = (hub_root / "models" / "org" / "tiny" / "config.json").read_bytes()
    with serve(hub_root) as hub:
        url = f"{hub.endpoint}/org/tiny/resolve/main/config.json"
        status, headers, body = fetch(url, method="HEAD")
        assert (status, body) == (200, b"")
        assert headers["X-Repo-Commit"] == COMMIT
        assert headers["Content-Length"] == str(len(data))
        assert headers["ETag"].startswith('"') and not any(key.lower().startswith("x-xet") for key in headers)
        status, headers, body = fetch(url, headers={"Range": "bytes=2-9"})
        assert (status, body, headers["Content-Range"]) == (206, data[2:10], f"bytes 2-9/{len(data)}")
        assert fetch(url, headers={"Range": "bytes=-5"})[2] == data[-5:]
        assert fetch(url, headers={"Range": f"bytes={len(data)}-"})[0] == 416
    assert not hub.unserved


def test_missing_things_get_the_hubs_error_codes(hub_root):
    """Missing files, revisions and repos are 404s with the X-Error-Code the libraries turn into their errors."""
    with serve(hub_root) as hub:
        cases = {
            "/org/tiny/resolve/main/adapter_config.json": "EntryNotFound",
            "/api/datasets/Anthropic/hh-rlhf/revision/refs%2Fconvert%2Fparquet": "RevisionNotFound",
            "/datasets/Anthropic/hh-rlhf/resolve/refs%2Fpr%2F1/README.md": "RevisionNotFound",
            "/api/models/org/absent": "RepoNotFound",
        }
        for path, code in cases.items():
            status, headers, body = fetch(hub.endpoint + path)
            assert (status, headers.get("X-Error-Code")) == (404, code), path
            assert "error" in json.loads(body)
    assert not hub.unserved
    assert len(hub.missing) == len(cases)


def test_trl_telemetry_is_answered_as_on_the_hub(hub_root):
    """TRL's trainers send HEAD /api/telemetry/trl/<Trainer> on a learner's machine (not under CI): a 200."""
    with serve(hub_root) as hub:
        status, _, body = fetch(f"{hub.endpoint}/api/telemetry/trl/DPOTrainer", method="HEAD")
        assert (status, body) == (200, b"")
        assert fetch(f"{hub.endpoint}/api/telemetry/trl/DPOTrainer")[0] == 404  # only HEAD is telemetry
    assert hub.unserved == ["GET /api/telemetry/trl/DPOTrainer"]


def test_unserved_requests_are_recorded_and_the_port_closes(hub_root, capsys):
    """An unknown route is a JSON 404 listed in hub.unserved (logged once); after the block the port is closed."""
    with serve(hub_root) as hub:
        port = int(hub.endpoint.rsplit(":", 1)[1])
        stuck = socket.create_connection(("127.0.0.1", port), timeout=2)  # a client that never finishes its request
        stuck.sendall(b"GET /api/models/org/tiny HTTP/1.1\r\n")
        for _ in range(2):
            status, _, body = fetch(f"{hub.endpoint}/api/spaces/x/y")
            assert status == 404 and "error" in json.loads(body)
        assert fetch(f"{hub.endpoint}/api/models/org/tiny/tree/main", method="POST")[0] == 404
        started = time.perf_counter()
    assert time.perf_counter() - started < 2, "a stuck client held up the shutdown"
    stuck.close()
    assert hub.unserved == ["GET /api/spaces/x/y", "GET /api/spaces/x/y", "POST /api/models/org/tiny/tree/main"]
    assert capsys.readouterr().err.count("not served: GET /api/spaces/x/y") == 1
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.slow
def test_transformers_loads_the_tiny_model(hub_root, tmp_path):
    """AutoModelForCausalLM and AutoTokenizer download "org/tiny" into HF_HOME, identical to the saved model."""
    local = hub_root / "models" / "org" / "tiny"
    code = f"""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained("org/tiny", dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained("org/tiny")
        saved = AutoModelForCausalLM.from_pretrained({str(local)!r}, dtype=torch.float32).state_dict()
        assert model.state_dict().keys() == saved.keys()
        assert all(torch.equal(value, saved[key]) for key, value in model.state_dict().items())
        saved_tokenizer = AutoTokenizer.from_pretrained({str(local)!r})
        assert tokenizer("Hello there")["input_ids"] == saved_tokenizer("Hello there")["input_ids"]
        print(type(model).__name__, len(tokenizer))
    """
    with serve(hub_root) as hub:
        out = run_python(code, hub.endpoint, tmp_path / "hf", tmp_path)
    assert out.split() == ["LlamaForCausalLM", "512"]
    assert not hub.unserved
    assert f"GET /org/tiny/resolve/{COMMIT}/model.safetensors" in hub.requests  # plain HTTP, not a Xet download
    assert (tmp_path / "hf" / "hub" / "models--org--tiny" / "snapshots" / COMMIT / "model.safetensors").is_file()


@pytest.mark.slow
def test_datasets_loads_hh_rlhf_and_the_hub_cache_works_offline(hub_root, tmp_path):
    """load_dataset reads hh-rlhf's jsonl.gz splits; hf_hub_download caches a file that it finds again offline."""
    code = """
        import json

        import huggingface_hub
        from datasets import load_dataset

        splits = load_dataset("Anthropic/hh-rlhf", data_dir="harmless-base")
        print(json.dumps({name: split.num_rows for name, split in splits.items()}))
        print(huggingface_hub.hf_hub_download("Anthropic/hh-rlhf", "harmless-base/test.jsonl.gz", repo_type="dataset"))
    """
    offline = """
        import huggingface_hub
        print(huggingface_hub.hf_hub_download("Anthropic/hh-rlhf", "harmless-base/test.jsonl.gz", repo_type="dataset"))
    """
    with serve(hub_root) as hub:
        rows, online_path = run_python(code, hub.endpoint, tmp_path / "hf", tmp_path).splitlines()
        seen = len(hub.requests)
        offline_path = run_python(offline, hub.endpoint, tmp_path / "hf", tmp_path, offline=True).strip()
    assert json.loads(rows) == SPLIT_ROWS
    assert offline_path == online_path
    assert f"snapshots/{COMMIT}/harmless-base/test.jsonl.gz" in Path(online_path).as_posix()
    expected = (hub_root / "datasets" / "Anthropic" / "hh-rlhf" / "harmless-base" / "test.jsonl.gz").read_bytes()
    assert Path(offline_path).read_bytes() == expected
    assert len(hub.requests) == seen, "the offline run asked the server"
    assert not hub.unserved


@pytest.mark.slow
def test_datasets_loads_ultrafeedback_parquet(hub_root, tmp_path):
    """load_dataset slices ultrafeedback's parquet train_prefs; paths-info and HfFileSystem's ranged reads work."""
    code = """
        from datasets import load_dataset
        from huggingface_hub import HfApi, HfFileSystem

        repo = "HuggingFaceH4/ultrafeedback_binarized"
        rows = load_dataset(repo, split="train_prefs[:3]")
        print(rows.num_rows, rows[0]["prompt"], rows[0]["chosen"][1]["content"])
        paths = ["data", "data/test_prefs-00000-of-00001.parquet", "absent"]
        print(*sorted(type(info).__name__ for info in HfApi().get_paths_info(repo, paths, repo_type="dataset")))
        with HfFileSystem().open(f"datasets/{repo}/data/test_prefs-00000-of-00001.parquet", block_size=64) as f:
            f.seek(-4, 2)
            print(f.read().decode())  # a parquet file ends with its magic bytes
    """
    with serve(hub_root) as hub:
        out = run_python(code, hub.endpoint, tmp_path / "hf", tmp_path)
    assert out.splitlines() == ["3 train_prefs question 0 kind", "RepoFile RepoFolder", "PAR1"]
    assert "POST /api/datasets/HuggingFaceH4/ultrafeedback_binarized/paths-info/main" in hub.requests
    assert not hub.unserved
