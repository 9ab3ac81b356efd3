"""Translations stay in step with English: same files, structure, code, images and numbers; clean UTF-8 everywhere.
Each starts with `<!-- source: <English path> sha256:<12 hex> -->`: stale once the English file changes."""

from __future__ import annotations

import ast
import hashlib
import re
import subprocess
from pathlib import Path

import pytest
from test_lessons import LINK, MODULE, ROOT, rel  # pytest puts tests/ on sys.path

LANGS = ["es", "it", "pt-br", "zh-cn"]
ENGLISH = sorted(MODULE.glob("*.md"))
PAIRS = [(lang, en) for lang in LANGS for en in ENGLISH]
HEADER = re.compile(r"\A<!-- source: (?P<source>\S+) sha256:(?P<hash>[0-9a-f]{12}) -->\n")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
MEASURED = re.compile(r"<!-- measured:([\w-]+) -->\n(.*?)<!-- /measured -->", re.S)
GLOSSARY_TERMS = ["DPO", "ORPO", "SFT", "reward", "reference model", "odds ratio", "fine-tuning", "chosen", "rejected"]


def translated(lang: str, english: Path) -> Path:
    return ROOT / "translations" / lang / english.relative_to(ROOT)


def english_hash(english: Path) -> str:
    """The first 12 hex digits of the SHA-256 of the English file's bytes, as recorded in its translations."""
    return hashlib.sha256(english.read_bytes()).hexdigest()[:12]


def headings(text: str) -> list[int]:
    """The level of every heading outside code blocks, in order."""
    return [len(h) for h in re.findall(r"^(#{1,6}) ", FENCE.sub("", text), re.M)]


HASH_COMMENTED = {"bash", "sh", "shell", "yaml", "yml", "toml"}


def _without_docstrings(tree: ast.AST) -> ast.AST:
    """`tree` with the docstring of every module, class and function taken out (translations may localise them)."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(getattr(body[0], "value", None), ast.Constant):
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _without_hash_comments(code: str) -> str:
    """Shell or YAML code with its `#` comments and trailing spaces taken out (a `#` inside quotes is kept)."""
    comment = re.compile(r"""^((?:[^#"']|"[^"]*"|'[^']*')*?)(?:^|\s)#.*""")  # a # after balanced quotes
    lines = [comment.sub(r"\1", line).rstrip() for line in code.splitlines()]
    return "\n".join(line for line in lines if line)


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, what the code does) of every fenced block: Python ignoring comments, docstrings and layout; shell
    and YAML ignoring comments; others verbatim."""
    blocks = []
    for lang, code in FENCE.findall(text):
        if lang == "python":
            code = ast.dump(_without_docstrings(ast.parse(code)))
        elif lang in HASH_COMMENTED:
            code = _without_hash_comments(code)
        blocks.append((lang, code))
    return blocks


def targets(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Resolved local link and image targets of a Markdown file with one of `suffixes`, in order."""
    found = [a or b for a, b in LINK.findall(FENCE.sub("", path.read_text(encoding="utf-8")))]
    files = [t.partition("#")[0] for t in found if not re.match(r"(https?|mailto):", t)]
    return [(path.parent / f).resolve() for f in files if f.endswith(suffixes)]


def numbers(text: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?", text)


@pytest.mark.parametrize(("lang", "english"), PAIRS, ids=lambda v: v if isinstance(v, str) else v.name)
def test_translation_follows_the_current_english_in_structure_code_images_and_numbers(lang, english):
    path = translated(lang, english)
    assert path.is_file(), f"{rel(english)} has no {lang} translation: add {rel(path)}"
    header = HEADER.match(path.read_text(encoding="utf-8"))
    assert header, f"{rel(path)} must start with <!-- source: {rel(english)} sha256:{english_hash(english)} -->"
    assert header["source"] == rel(english)
    assert header["hash"] == english_hash(english), (
        f"{rel(path)} follows an older {rel(english)} (recorded {header['hash']}, now {english_hash(english)}): "
        f"bring the translation up to date (`git diff` the English file), then record the new hash"
    )
    text, source = path.read_text(encoding="utf-8"), english.read_text(encoding="utf-8")
    assert headings(text) == headings(source), f"{rel(path)}: headings differ in number or level from English"
    assert code_blocks(text) == code_blocks(source), f"{rel(path)}: code differs from English (comments may differ)"
    for suffixes in ((".png", ".svg", ".jpg"), (".ipynb",)):
        assert targets(path, suffixes) == targets(english, suffixes), f"{rel(path)}: {suffixes} links differ"
    ours, theirs = dict(MEASURED.findall(text)), dict(MEASURED.findall(source))
    assert ours.keys() == theirs.keys(), f"{rel(path)}: measured tables differ from English"
    for name in theirs:
        assert numbers(ours[name]) == numbers(theirs[name]), f"{rel(path)}: numbers of table {name} differ"
    assert len(re.findall(r"\$\$", text)) == len(re.findall(r"\$\$", source)), f"{rel(path)}: equations differ"


@pytest.mark.parametrize("lang", LANGS)
def test_every_language_has_a_glossary(lang):
    glossary = ROOT / "translations" / lang / "GLOSSARY.md"
    text = glossary.read_text(encoding="utf-8")
    for term in GLOSSARY_TERMS:
        assert re.search(rf"\|\s*{re.escape(term)}\b", text, re.I), f"{rel(glossary)} has no row for {term!r}"


def test_readmes_link_every_language():
    readmes = [MODULE / "README.md", *(translated(lang, MODULE / "README.md") for lang in LANGS)]
    for readme in readmes:
        linked = set(targets(readme, (".md",)))
        assert set(r.resolve() for r in readmes) - {readme.resolve()} <= linked, f"{rel(readme)}: link every language"
    top = set(targets(ROOT / "README.md", (".md",)))
    assert {r.resolve() for r in readmes} <= top, "the top-level README links the module in every language"


# UTF-8 read as Windows-1252 / Latin-1 (an "é" shows as two characters) or GBK, with the shortest run that tells
# damage from real text: real Chinese can survive the GBK round trip by chance ("之前"), damage comes in long runs.
MOJIBAKE_ENCODINGS = {"cp1252": 2, "latin-1": 2, "gbk": 6}


def mojibake(text: str) -> list[str]:
    """Runs of non-ASCII characters that are UTF-8 read in the wrong encoding, or replacement/C1 characters."""
    found = re.findall(r".{0,20}[\ufffd\x80-\x9f].{0,20}", text)
    for run in re.findall(r"[^\x00-\x7f]{2,}", text):
        for encoding, shortest in MOJIBAKE_ENCODINGS.items():
            try:
                repaired = run.encode(encoding).decode("utf-8")
            except UnicodeError:
                continue
            if len(run) >= shortest and repaired != run:
                found.append(run)
    return found


def text_files() -> list[Path]:
    """Every text file git tracks or would track (new files too, ignored ones not)."""
    command = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    listed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    paths = [ROOT / p for p in listed]
    suffixes = {".md", ".py", ".ipynb", ".json", ".jsonl", ".txt", ".toml", ".yaml", ".yml", ".cfg"}
    return sorted({p for p in paths if p.is_file() and (p.suffix in suffixes or p.name == "Makefile")})


def test_every_text_file_is_clean_utf8():
    # The damage it looks for, made here rather than written out, so this file passes its own check.
    assert all(mojibake(t.encode().decode(c)) for t, c in [("Alineación", "cp1252"), ("偏好对齐与优化啊", "gbk")])
    for path in text_files():
        text = path.read_bytes().decode("utf-8")  # raises on anything that is not UTF-8
        assert not mojibake(text), f"{rel(path)} holds text decoded in the wrong encoding: {mojibake(text)[:3]}"
