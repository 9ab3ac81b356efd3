"""The hyperparameters a notebook trains with, read from its code: the one source of the course's recipes.

Each notebook writes its recipes as literals beside the calls that use them: a table with one row per recipe
(`DPO_RECIPES = {"hub": (0.5, 1e-6, ...), "offline": (...)}`) unpacked into names (`BETA, LEARNING_RATE, ... =
DPO_RECIPES[profile.recipe]`), or a one-line choice (`MAX_LENGTH = {"hub": 1024, "offline": 128}[profile.recipe]`),
or a plain literal in the call. `settings(notebook, "DPOConfig")` resolves the keyword arguments of that call for each
recipe, and refuses one that is not a literal or a name bound to one. `scripts/configs/*.yaml` (what `train.py` reads)
and the benchmarks are held to these values by the tests.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "2_preference_alignment" / "notebooks"
CONFIGS = ROOT / "2_preference_alignment" / "scripts" / "configs"
RECIPES = ("hub", "offline")
# The arguments that change what is learned: every one a literal in the notebook, beside the call.
LEARNED = {"beta", "learning_rate", "lr_scheduler_type", "warmup_steps", "num_train_epochs", "max_length"}
LEARNED |= {"per_device_train_batch_size", "gradient_accumulation_steps", "activation_checkpointing"}
# Arguments that say where and how a run happens, not what it learns: they may come from helpers and the device.
PLUMBING = {"output_dir", "seed", "report_to", "save_strategy", "logging_steps", "bf16", "fp16", "use_cpu"}
PLUMBING |= {"eval_strategy", "hub_model_id", "per_device_eval_batch_size", "disable_tqdm"}


def code(notebook: str) -> ast.Module:
    """The notebook's code cells as one module (shell escapes such as `!pip` become `pass`)."""
    cells = json.loads((NOTEBOOKS / notebook).read_text(encoding="utf-8"))["cells"]
    lines = [line for cell in cells if cell["cell_type"] == "code" for line in "".join(cell["source"]).splitlines()]
    escape = re.compile(r"^(\s*)[!%].*$")
    return ast.parse("\n".join(escape.sub(r"\1pass", line) for line in lines))


def _literal_per_recipe(node: ast.expr) -> dict[str, object] | None:
    """`{"hub": a, "offline": b}[profile.recipe]` as {recipe: value}; None for anything else."""
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Dict):
        table = ast.literal_eval(node.value)
        if set(table) == set(RECIPES):
            return table
    return None


def bindings(module: ast.Module) -> dict[str, dict[str, object]]:
    """Every name the notebook binds to a literal, as {name: {recipe: value}}."""
    tables: dict[str, dict] = {}
    bound: dict[str, dict[str, object]] = {}
    for node in ast.walk(module):
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target, value = node.targets[0], node.value
        if isinstance(target, ast.Name) and isinstance(value, ast.Dict) and target.id.endswith("_RECIPES"):
            tables[target.id] = ast.literal_eval(value)
        elif isinstance(target, ast.Tuple) and isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name):
            table = tables[value.value.id]
            for column, name in enumerate(target.elts):
                bound[name.id] = {recipe: row[column] for recipe, row in table.items()}
        elif isinstance(target, ast.Name) and (choice := _literal_per_recipe(value)) is not None:
            bound[target.id] = choice
        elif isinstance(target, ast.Name) and isinstance(value, ast.Constant):
            bound[target.id] = dict.fromkeys(RECIPES, value.value)
    return bound


def resolve(keywords: list[tuple[str, ast.expr]], bound: dict, where: str) -> dict[str, dict[str, object]]:
    """{recipe: {argument: value}} for keyword arguments that must each be a literal or a name bound to one."""
    values: dict[str, dict[str, object]] = {recipe: {} for recipe in RECIPES}
    for name, node in keywords:
        if name in PLUMBING:
            continue
        if isinstance(node, ast.Constant):
            per_recipe = dict.fromkeys(RECIPES, node.value)
        elif isinstance(node, ast.Name) and node.id in bound:
            per_recipe = bound[node.id]
        elif (choice := _literal_per_recipe(node)) is not None:
            per_recipe = choice
        else:
            raise ValueError(f"{where}: {name}={ast.unparse(node)} is not a literal or a name bound to one")
        for recipe in RECIPES:
            values[recipe][name] = per_recipe[recipe]
    return values


def settings(notebook: str, call: str) -> dict[str, dict[str, object]]:
    """{recipe: {argument: value}} of the notebook's `call(...)` (a config class) or `call = {...}` (a dict)."""
    module = code(notebook)
    bound = bindings(module)
    for node in ast.walk(module):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == call:
            keywords = [(k.arg, k.value) for k in node.keywords if k.arg is not None]
            return resolve(keywords, bound, f"{notebook}: {call}")
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == call:
            assert isinstance(node.value, ast.Dict), f"{notebook}: {call} is not a dict literal"
            keywords = [(ast.literal_eval(k), v) for k, v in zip(node.value.keys, node.value.values, strict=True)]
            return resolve(keywords, bound, f"{notebook}: {call}")
    raise LookupError(f"{notebook} has no {call}(...) call and no {call} = {{...}}")
