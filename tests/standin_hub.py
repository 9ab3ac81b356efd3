"""A stand-in for the Hugging Face Hub on 127.0.0.1: with `HF_ENDPOINT` pointing at it (set before huggingface_hub is
imported), `huggingface_hub`, `transformers` and `datasets` run their real online code paths offline.

It serves `root/{models,datasets}/<org>/<name>/...`, each repo at one fake commit `COMMIT` (also the revision `main`):
repo info, tree listing, paths-info and file downloads with Range, as plain git blobs (never LFS or Xet), plus the
two side requests the libraries send (agent-harnesses, TRL's telemetry HEAD). A missing repo, revision or file gets
the Hub's 404 and `X-Error-Code` (the libraries fall back on them); any other request is a 404 recorded in
`hub.unserved`, logged once to stderr. `hub.requests` lists every request as "METHOD path".
"""

from __future__ import annotations

import functools
import hashlib
import json
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
KINDS = ("models", "datasets")
NO_AGENT_HARNESSES = {"standardEnvVars": [], "harnesses": {}}  # huggingface_hub's User-Agent then names no agent
SOCKET_TIMEOUT_S = 30  # a client that stops sending frees its handler thread after this long
FILE_HEADERS = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}


@dataclass
class Hub:
    """A running stand-in: its URL, every request and those it does not implement ("METHOD path", in order)."""

    root: Path
    endpoint: str = ""
    unserved: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class NotFound(Exception):
    """A 404 the Hub would send: NotFound(X-Error-Code, message)."""


@functools.lru_cache(maxsize=256)
def _file_blob_id(path: Path, size: int, mtime_ns: int) -> str:
    """The git blob id of one version of a file (size and time key the cache)."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def file_blob_id(path: Path) -> str:
    """A file's git blob id, the Hub's ETag and `oid` of a plain file; hashed once, as weights are asked for often."""
    stat = path.stat()
    return _file_blob_id(path, stat.st_size, stat.st_mtime_ns)


def repo_dir(hub: Hub, kind: str, org: str, name: str, revision: str) -> Path:
    """The folder of a repo, or NotFound: RepoNotFound, or RevisionNotFound for all but `main` and the fake commit."""
    folder = (hub.root / kind / org / name).resolve()
    if ".." in (org, name) or not folder.is_dir():
        raise NotFound("RepoNotFound", f"Repository {org}/{name} not found")
    if revision not in REVISIONS:  # e.g. refs/convert/parquet, which datasets tries first
        raise NotFound("RevisionNotFound", f"Invalid rev id: {revision}")
    return folder


def inside(folder: Path, path: str, is_file: bool = False) -> Path:
    """`folder / path`, or NotFound(EntryNotFound) when it climbs out of the repo (or, asked for, is no file)."""
    target = (folder / path).resolve()
    if not target.is_relative_to(folder) or (is_file and not target.is_file()):
        raise NotFound("EntryNotFound", f"Entry not found: {path}")
    return target


def entry(folder: Path, path: str) -> dict:
    """A tree / paths-info entry for one file or folder of a repo."""
    target = folder / path
    if target.is_dir():
        return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}
    return {"type": "file", "oid": file_blob_id(target), "size": target.stat().st_size, "path": path}


def repo_info(folder: Path, kind: str, repo_id: str) -> dict:
    """The JSON of GET /api/{models,datasets}/<repo>: the fields the libraries read."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    siblings = [{"rfilename": p.relative_to(folder).as_posix(), "size": p.stat().st_size} for p in files]
    info = {"_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id, "author": repo_id.split("/")[0]}
    info |= {"sha": COMMIT, "lastModified": DATE, "createdAt": DATE, "downloads": 0, "likes": 0, "tags": []}
    info |= {"private": False, "gated": False, "disabled": False, "siblings": siblings}
    return info | ({"modelId": repo_id} if kind == "models" else {})


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
        """Quiet: requests go to hub.requests; only unserved ones reach stderr."""

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
            self.send_json({"error": error.args[1]}, status=404, headers={"X-Error-Code": error.args[0]})

    do_GET = do_HEAD = do_POST = dispatch

    def route(self) -> bool:
        """Answer a request this stand-in serves; False for any other."""
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")  # split before unquoting: a revision may hold an encoded "/"
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        if self.command == "GET" and url.path == "/api/agent-harnesses":
            self.send_json(NO_AGENT_HARNESSES)
            return True
        if self.command == "HEAD" and parts[:2] == ["api", "telemetry"]:
            self.send(200, b"", {})  # TRL's trainers report their use unless CI is set
            return True
        if parts[0] == "api" and len(parts) >= 4 and parts[1] in KINDS:
            return self.route_api(parts[1], parts[2], parts[3], parts[4:], query)
        kind = "datasets" if parts[0] == "datasets" else "models"
        parts = parts[1:] if kind == "datasets" else parts
        if self.command in ("GET", "HEAD") and len(parts) >= 5 and parts[2] == "resolve":
            folder = repo_dir(self.hub, kind, unquote(parts[0]), unquote(parts[1]), unquote(parts[3]))
            self.send_file(inside(folder, unquote("/".join(parts[4:])), is_file=True))
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
        folder = repo_dir(self.hub, kind, unquote(org), unquote(name), revision)
        if action in (None, "revision"):
            self.send_json(repo_info(folder, kind, f"{unquote(org)}/{unquote(name)}"))
        elif action == "tree":
            path = unquote("/".join(rest[2:]))
            self.send_json(tree(folder, path, query.get("recursive", "").lower() == "true"))
        else:
            paths = [p.strip("/") for p in parse_qs(self.body.decode()).get("paths", [])]  # form-encoded
            self.send_json([entry(folder, p) for p in paths if inside(folder, p).exists()])
        return True

    def send_file(self, path: Path) -> None:
        """A repo file as the Hub sends a plain (non-LFS) file, honouring a single Range."""
        data = path.read_bytes()
        headers = {**FILE_HEADERS, "ETag": f'"{file_blob_id(path)}"'}
        try:
            span = byte_range(self.headers.get("Range"), len(data))
        except ValueError:
            self.send(416, b"", {**headers, "Content-Range": f"bytes */{len(data)}"})
            return
        if span is None:
            self.send(200, data, headers)
        else:
            start, end = span
            self.send(206, data[start : end + 1], {**headers, "Content-Range": f"bytes {start}-{end}/{len(data)}"})

    def send_json(self, payload: object, status: int = 200, headers: dict[str, str] | None = None) -> None:
        """A JSON answer."""
        self.send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

    def send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        """Send status, headers and, unless a HEAD, the body (always with its Content-Length: keep-alive)."""
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
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# SmolLM2-135M's architecture at a smoke run's size: the runs prove the code path (real tokenizer, chat template,
# vocabulary, bf16 checkpoint, download), not the model, whose real weights `make real` and its smoke test train.
MINIATURE = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4}
MINIATURE |= {"num_key_value_heads": 2, "head_dim": 16, "initializer_range": 0.2}  # 0.02: greedy replies are "\n"s


def course_hub(root: Path) -> Path:
    """Lay out under `root` the repos the `hub` profile reads (see CONTRIBUTING.md, "The hub path"); returns `root`."""
    import torch
    from datasets import Dataset, load_dataset
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from course_utils.data import format_hh_rlhf
    from course_utils.sources import DATA_FILE, is_test
    from tools.smollm2 import smollm2_instruct

    instruct = smollm2_instruct()
    config = AutoConfig.from_pretrained(instruct)
    config.update(MINIATURE)
    torch.manual_seed(0)
    miniature = AutoModelForCausalLM.from_config(config, dtype=torch.float32).to(torch.bfloat16)  # stored as SmolLM2
    miniature.generation_config = GenerationConfig.from_pretrained(instruct)
    models = root / "models" / "HuggingFaceTB"
    for name in ("SmolLM2-135M-Instruct", "SmolLM2-135M"):
        miniature.save_pretrained(models / name)
        tokenizer = AutoTokenizer.from_pretrained(instruct)
        if name == "SmolLM2-135M":  # like the base repo's: no chat template, no pad token
            tokenizer.chat_template, tokenizer.pad_token, tokenizer.eos_token = None, None, "<|endoftext|>"
        tokenizer.save_pretrained(models / name)

    rows = load_dataset("json", data_files=str(DATA_FILE), split="train")
    hh = root / "datasets" / "Anthropic" / "hh-rlhf" / "harmless-base"
    hh.mkdir(parents=True)  # test: every shipped row; train: those outside `local`'s test, so openings repeat
    rows.filter(lambda r: not is_test(r["chosen"])).to_json(hh / "train.jsonl.gz", compression="gzip")
    rows.to_json(hh / "test.jsonl.gz", compression="gzip")

    pairs, _ = format_hh_rlhf(rows.select(range(120)), verbose=False)
    uf = root / "datasets" / "HuggingFaceH4" / "ultrafeedback_binarized" / "data"
    uf.mkdir(parents=True)
    for split, part in (("train_prefs", range(0, 100)), ("test_prefs", range(100, len(pairs)))):
        uf_rows = [
            {"prompt": row["prompt"][-1]["content"], "prompt_id": str(i)}
            | {side: row["prompt"] + row[side] for side in ("chosen", "rejected")}
            | {"score_chosen": 8.0, "score_rejected": 4.0}
            for i, row in zip(part, pairs.select(part), strict=True)
        ]
        Dataset.from_list(uf_rows).to_parquet(uf / f"{split}-00000-of-00001.parquet")
    return root
