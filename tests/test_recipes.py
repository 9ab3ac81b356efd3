"""Every knob in sight: the hyperparameters the notebooks train with are literals beside the calls that use them, and
the copies elsewhere (train.py's configs, the SFT→DPO stage of the ORPO notebook) agree with them."""

import ast

import pytest

from tools import recipes

DPO, ORPO = "dpo_finetuning_example.ipynb", "orpo_finetuning_example.ipynb"
CALLS = [(DPO, "DPOConfig"), (DPO, "warm_start"), (ORPO, "ORPOConfig"), (ORPO, "DPOConfig"), (ORPO, "sft_settings")]


@pytest.mark.parametrize(("notebook", "call"), CALLS)
def test_every_learned_argument_is_a_literal_in_the_notebook(notebook, call):
    found = recipes.settings(notebook, call)  # raises on an argument that is not a literal or bound to one
    expected = recipes.LEARNED - {"beta"} if call.startswith(("sft", "warm")) else recipes.LEARNED  # SFT has no β
    for row, values in found.items():
        assert set(values) == expected, f"{notebook} {call} ({row}): {set(values) ^ expected}"


def test_the_orpo_notebooks_sft_dpo_trains_with_the_dpo_notebooks_recipes():
    assert recipes.settings(ORPO, "DPOConfig") == recipes.settings(DPO, "DPOConfig")
    assert recipes.settings(ORPO, "sft_settings")["offline"] == recipes.settings(DPO, "warm_start")["offline"]


def test_sft_before_dpo_makes_as_many_passes_as_orpo():
    # benchmarks/t4_estimate.py counts the SFT stage's epochs as ORPO's: the comparison gives both the same passes.
    sft, orpo = recipes.settings(ORPO, "sft_settings"), recipes.settings(ORPO, "ORPOConfig")
    assert sft["hub"]["num_train_epochs"] == orpo["hub"]["num_train_epochs"]


def test_a_hidden_knob_is_refused():
    module = ast.parse('settings = {"beta": 0.1}\nDPOConfig(beta=settings["beta"], learning_rate=1e-6)')
    bound = recipes.bindings(module)
    call = next(node for node in ast.walk(module) if isinstance(node, ast.Call))
    with pytest.raises(ValueError, match=r"beta=settings\['beta'\] is not a literal"):
        recipes.resolve([(k.arg, k.value) for k in call.keywords], bound, "example")


def test_a_table_row_binds_each_column_to_its_name():
    module = ast.parse(
        'T_RECIPES = {"hub": (0.5, 1e-6), "offline": (0.1, 2e-4)}\nBETA, LR = T_RECIPES[profile.recipe]\n'
        'M = {"hub": 1024, "offline": 128}[profile.recipe]\n'
        "DPOConfig(beta=BETA, learning_rate=LR, max_length=M, seed=1)"
    )
    call = next(node for node in ast.walk(module) if isinstance(node, ast.Call))
    resolved = recipes.resolve([(k.arg, k.value) for k in call.keywords], recipes.bindings(module), "example")
    assert resolved == {
        "hub": {"beta": 0.5, "learning_rate": 1e-6, "max_length": 1024},
        "offline": {"beta": 0.1, "learning_rate": 2e-4, "max_length": 128},
    }
