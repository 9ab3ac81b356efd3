"""The lessons: every Python block runs (offline, in order in one namespace, Hub ids replaced by local stand-ins; code
shared by translations runs once), every link, image and badge resolves, every measured table is rendered."""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer

from tools import figures

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "2_preference_alignment"
LESSONS = sorted([*MODULE.glob("*.md"), *ROOT.glob("translations/*/2_preference_alignment/*.md")])
MARKDOWN = sorted([ROOT / "README.md", *LESSONS, *ROOT.glob("translations/*/*.md")])
REPO = "smol-course/smol-preference-alignment"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)|(?:href|src)=\"([^\"]+)\"")
COLAB = re.compile(r"https://colab\.research\.google\.com/github/([^/]+/[^/]+)/blob/main/([^\s\"')]+)")
HUB_IDS = ("HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M", "Anthropic/hh-rlhf")


def rel(path: Path) -> str:
    """The path from the repository root."""
    return path.relative_to(ROOT).as_posix()


def python_blocks(path: Path) -> list[str]:
    """The code of every ```python block of a Markdown file, in order."""
    return PYTHON_BLOCK.findall(path.read_text(encoding="utf-8"))


def code_key(block: str) -> str:
    """What a block does, comments and layout aside; a block that does not parse is its own key, and runs."""
    try:
        return ast.dump(ast.parse(block))
    except SyntaxError:
        return block


def lessons_with_code() -> list[Path]:
    """One lesson per distinct sequence of Python blocks (English first, so it is the one that runs)."""
    chosen = {}
    for path in sorted(LESSONS, key=lambda p: ("translations" in p.parts, p)):
        if blocks := python_blocks(path):
            chosen.setdefault(tuple(map(code_key, blocks)), path)
    return list(chosen.values())


def stored_like_smollm2(tiny_model_dir: Path, folder: Path, base_model: bool) -> str:
    """The tiny model stored in bf16 like SmolLM2 (fp32 must be asked for); a base one has SmolLM2-135M's tokenizer."""
    AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    if base_model:
        tokenizer.pad_token, tokenizer.chat_template, tokenizer.eos_token = None, None, "<|endoftext|>"
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def hub_standins(tmp_path_factory, tiny_model_dir) -> dict[str, str]:
    """Local folders that stand in for the Hub ids the lessons load (the snippets save to their own output_dir)."""
    base = tmp_path_factory.mktemp("hub")
    instruct = stored_like_smollm2(tiny_model_dir, base / "instruct", base_model=False)
    base_model = stored_like_smollm2(tiny_model_dir, base / "base", base_model=True)
    (dataset := base / "hh-rlhf" / "harmless-base").mkdir(parents=True)
    for split in ("train", "test"):
        shutil.copy(ROOT / f"course_utils/offline_data/preference_{split}.jsonl", dataset / f"{split}.jsonl")
    return {HUB_IDS[0]: instruct, HUB_IDS[1]: base_model, HUB_IDS[2]: str(dataset.parent)}


def offline(code: str, standins: dict[str, str]) -> str:
    """The code with every quoted Hub id replaced by its local stand-in."""
    for hub_id, local in standins.items():
        code = code.replace(f'"{hub_id}"', repr(local))
    return code


def run_blocks(lesson: Path, standins: dict[str, str], folder: Path) -> list[Trainer]:
    """Run a lesson's Python blocks in `folder`, training for two steps; returns every trainer they built."""
    built: list[Trainer] = []
    init, train = Trainer.__init__, Trainer.train

    def recorded(trainer, *args, **kwargs):
        init(trainer, *args, **kwargs)
        built.append(trainer)

    def two_steps(trainer, *args, **kwargs):  # the notebooks are where the course trains in full
        trainer.args.max_steps = 2
        return train(trainer, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # output_dir="…" of the snippets lands here
        patch.setattr(Trainer, "__init__", recorded)
        patch.setattr(Trainer, "train", two_steps)
        namespace: dict = {"__name__": "__lesson__"}
        for number, block in enumerate(python_blocks(lesson), start=1):
            try:
                exec(compile(offline(block, standins), f"{rel(lesson)} block {number}", "exec"), namespace)
            except Exception as error:
                raise AssertionError(f"{rel(lesson)}: Python block {number} failed: {error!r}") from error
    return built


@pytest.mark.slow
@pytest.mark.parametrize("lesson", lessons_with_code(), ids=rel)
def test_python_blocks_run_and_train_fp32_weights(lesson, hub_standins, tmp_path):
    """Every block runs, and trains fp32 weights (bf16 only in the computation) from the bf16-stored stand-ins."""
    for trainer in run_blocks(lesson, hub_standins, tmp_path):
        dtypes = {parameter.dtype for parameter in trainer.model.parameters()}
        assert dtypes == {torch.float32}, (
            f"{rel(lesson)}: its {type(trainer).__name__} trains {sorted(map(str, dtypes))} weights; load the model "
            "with dtype=torch.float32 (or let the trainer load it in fp32)"
        )


NOTEBOOKS = sorted(MODULE.glob("notebooks/*.ipynb"))
SOLUTION = re.compile(r"^[ \t]*### BEGIN SOLUTION\n(.*?)^[ \t]*### END SOLUTION", re.M | re.S)
# How each prediction exercise's answer reads in prose: none may come before the exercise outside a spoiler.
GIVE_AWAY = {
    "dpo_finetuning_example": ("higher β keeps", "lower β lets", "higher = stays closer", "β makes every step away"),
    "orpo_finetuning_example": ("NLL rises", "rises with λ", "λ = 1 fits them worst", "held-out NLL is the highest"),
}


def answer_lines(code: str) -> set[str]:
    """The statements of a solution, comments and layout aside: the lines one could copy."""
    lines = {" ".join(line.split("#")[0].split()) for line in code.splitlines()}
    return {line for line in lines if len(line) >= 12}


def answered_functions(cell: str) -> set[str]:
    """The functions of an exercise cell whose body the learner writes."""
    tree = ast.parse(cell)
    marks = [i + 1 for i, line in enumerate(cell.splitlines()) if "### BEGIN SOLUTION" in line]
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and any(node.lineno < m <= node.end_lineno for m in marks)
    }


def spoilers_removed(text: str) -> str:
    """Text a reader sees without opening a collapsed block."""
    return re.sub(r"<details>.*?</details>", "", text, flags=re.S)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_exercise_answer_is_given_before_the_exercise(notebook):
    """The lessons (read first) and the cells before an exercise teach the formulas, not the code it asks for."""
    lessons = {rel(path): path.read_text(encoding="utf-8") for path in MARKDOWN}
    cells = nbformat.read(notebook, as_version=4).cells
    exercises = [i for i, cell in enumerate(cells) if "### BEGIN SOLUTION" in cell.source]
    assert exercises
    for i in exercises:
        earlier = {f"{notebook.name} cell {j}": cells[j].source for j in range(i)}
        for name in answered_functions(cells[i].source):
            shown = [where for where, text in lessons.items() if re.search(rf"^\s*def {name}\(", text, re.M)]
            assert not shown, f"{', '.join(shown)} shows `{name}`, which exercise cell {i} asks the learner to write"
        for line in {line for region in SOLUTION.findall(cells[i].source) for line in answer_lines(region)}:
            where = [w for w, text in {**lessons, **earlier}.items() if line in " ".join(text.split())]
            assert not where, f"`{line}`, an answer of cell {i}, is given in {', '.join(where)}"
    check = max(i for i, cell in enumerate(cells) if "checks." in cell.source and "PREDICTION" in cell.source)
    before = {**lessons, **{f"{notebook.name} cell {j}": cells[j].source for j in range(check)}}
    for phrase in GIVE_AWAY[notebook.stem]:
        where = [w for w, text in before.items() if phrase in spoilers_removed(text)]
        assert not where, f"{', '.join(where)} gives the prediction away before its check: {phrase!r}"


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file, plus explicit `id="…"` anchors (also in notebooks)."""
    text = path.read_text(encoding="utf-8")
    anchors = set(re.findall(r'id=\\?"([^"\\]+)\\?"', text))
    for heading in re.findall(r"^#{1,6} (.+)$", re.sub(r"```.*?```", "", text, flags=re.S), re.M):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return anchors


def local_targets(path: Path) -> list[str]:
    """Every link and image target of a Markdown file that is not a web address."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    targets = [a or b for a, b in LINK.findall(text)]
    return [t for t in targets if not re.match(r"(https?|mailto):", t)]


@pytest.mark.parametrize("path", MARKDOWN, ids=rel)
def test_relative_links_images_and_colab_badges_resolve(path):
    for target in local_targets(path):
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        assert resolved.exists(), f"{rel(path)} links to {target}, which does not exist"
        if anchor and resolved.suffix in (".md", ".ipynb"):
            assert anchor in heading_anchors(resolved), f"{rel(path)} links to #{anchor}, not in {resolved.name}"
    for repo, notebook in COLAB.findall(path.read_text(encoding="utf-8")):
        assert repo == REPO, f"{rel(path)}: a Colab link points at {repo}, not {REPO}"
        assert (ROOT / notebook).is_file(), f"{rel(path)}: a Colab link points at {notebook}, which does not exist"


def test_module_readme_offers_every_notebook_in_colab():
    linked = {notebook for _, notebook in COLAB.findall((MODULE / "README.md").read_text(encoding="utf-8"))}
    notebooks = [p for p in (MODULE / "notebooks").glob("**/*.ipynb") if "runs" not in p.parts]  # exercises too
    assert linked == {rel(p) for p in notebooks}


def with_measured_tables() -> dict[str, str]:
    """What `tools/figures.py --tables` rewrites: English lessons, CONTRIBUTING.md, notebooks' Markdown cells."""
    pages = [*sorted(MODULE.glob("*.md")), ROOT / "CONTRIBUTING.md"]
    texts = {rel(path): path.read_text(encoding="utf-8") for path in pages}
    for path in sorted((MODULE / "notebooks").glob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        texts[rel(path)] = "\n\n".join(cell.source for cell in cells if cell.cell_type == "markdown")
    return texts


def test_lesson_tables_are_generated_from_measured_json():
    measured = json.loads(figures.MEASURED.read_text(encoding="utf-8"))
    texts = with_measured_tables()
    for name, text in texts.items():
        assert figures.fill_tables(text, measured) == text, (
            f"{name}: a measured table differs from measured.json; run `python tools/figures.py --tables`"
        )
    names = {m["name"] for text in texts.values() for m in figures.BLOCK.finditer(text)}
    assert names == set(figures.tables(measured)), "every measured table appears in a lesson or a notebook"
