"""`make real` and the real path's committed measurements: what the lesson quotes is what the script now does."""

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_evaluation import reply_logprobs  # pytest puts tests/ on sys.path
from test_training import dpo_trainer

from course_utils import evaluation

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "real-path"


@pytest.fixture(scope="module")
def real_run():
    spec = importlib.util.spec_from_file_location("real_run", ROOT / "2_preference_alignment/scripts/real_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_answering_pairs_keep_the_models_own_answers_against_the_refusals_given(real_run, monkeypatch, capsys):
    # An answer that declines or loops is no example to follow: it is left out, and the run says how many.
    answers = [
        "Paris is the capital of France.",
        "I'm sorry, but I can't help with that.",
        "go " * 30,
        "Four.",
        "Blue.",
    ]
    monkeypatch.setattr(real_run.evaluation, "generate", lambda model, tok, chats, *a, **k: answers[: len(chats)])
    refusals = ["I won't help with that.", "That is not something I can do."]
    requests = [f"request {i}" for i in range(10)]
    pairs = real_run.answering_pairs(None, None, requests, refusals, n=4, bf16=False)
    assert [p[0]["content"] for p in pairs["chosen"]] == ["Paris is the capital of France.", "Four.", "Blue."]
    assert all(p[0]["content"] in refusals for p in pairs["rejected"])
    assert all(len(p) == 1 and p[0]["content"] in requests for p in pairs["prompt"])
    assert "3 of 5 own answers kept" in capsys.readouterr().out
    assert all(task.strip() for task in real_run.seed_tasks()) and len(real_run.seed_tasks()) == 175


def test_implicit_reward_accuracy_compares_summed_log_probability_gains(real_run, tiny, held_out_pairs):
    # DPO's implicit reward is β·log(π/π_ref) of the whole reply: a sum over its tokens, not a mean.
    pairs = held_out_pairs.select(range(12))
    reference, tokenizer = tiny
    policy = copy.deepcopy(reference)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.05)

    def gain(prompt: list, reply: list) -> float:
        new, old = (reply_logprobs(model, tokenizer, prompt, reply).sum().item() for model in (policy, reference))
        return new - old

    rows = zip(pairs["prompt"], pairs["chosen"], pairs["rejected"], strict=True)
    expected = sum(gain(p, c) > gain(p, r) for p, c, r in rows) / len(pairs)
    reference_means, policy_means = (
        tuple(evaluation.mean_logprobs(model, tokenizer, pairs["prompt"], pairs[k]) for k in ("chosen", "rejected"))
        for model in (reference, policy)
    )
    assert real_run.implicit_reward_accuracy(tokenizer, pairs, reference_means, policy_means) == expected
    assert 0 < expected < 1  # the pairs disagree, so a mean in place of the sum would show
    assert real_run.implicit_reward_accuracy(tokenizer, pairs, reference_means, reference_means) == 0


@pytest.mark.filterwarnings("error::FutureWarning")  # a deprecated argument of the cached forward pass, say
def test_refusal_score_is_the_probability_of_a_refusal_opening_and_auc_ranks_by_it(real_run, tiny):
    (model, tokenizer), requests = tiny, ["How can I steal a car?", "What color is a lime?", "Help me hurt my brother."]
    scores = real_run.refusal_scores(model, tokenizer, requests, batch_size=2)  # two batches, one padded
    for request, score in zip(requests, scores, strict=True):  # against one row at a time, a full log-softmax
        chat = [{"role": "user", "content": request}]
        probability = sum(
            reply_logprobs(model, tokenizer, chat, [{"role": "assistant", "content": opening}])[:-2].sum().exp()
            for opening in real_run.REFUSAL_OPENINGS  # [:-2]: the opening without the template's end of turn
        )
        assert score == pytest.approx(probability.log().item(), rel=1e-4)
    assert real_run.auc([3.0, 2.0], [1.0, 2.0]) == 0.875  # 3 > 1, 3 > 2, 2 > 1, and a tie at 2 counts half
    assert real_run.frontier([3.0, 2.0], [1.0, 2.0]) == [(1.0, 0.0), (0.0, 1.0), (0.5, 1.0), (1.0, 0.5)]


def test_the_untrained_measures_are_computed_once_per_key(real_run, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    calls = []
    results = [real_run.cached({"weights": w}, lambda: calls.append(1) or {"auc": 0.6}) for w in "aab"]
    assert results == [{"auc": 0.6}] * 3 and len(calls) == 2 and not list(tmp_path.rglob("*.partial"))


def test_release_memory_runs_once_per_update(real_run, tiny_model_dir, bundled_pairs, tmp_path, monkeypatch):
    # make real's memory stays flat only if freed pages go back after every update, not once at the end.
    calls = []
    monkeypatch.setattr(real_run.cost, "release_memory", lambda: calls.append(1))
    pairs, callbacks = bundled_pairs.select(range(8)), [real_run.ReleaseMemory()]
    settings = {"per_device_train_batch_size": 1, "gradient_accumulation_steps": 2}
    trainer = dpo_trainer(tiny_model_dir, pairs, tmp_path, callbacks=callbacks, **settings)
    trainer.train()
    assert len(calls) == trainer.state.global_step == 3


@pytest.mark.slow
def test_smoke_run_writes_both_sides_and_every_reply(tmp_path):
    # What `make real` records: both sides before and after, the peak memory, and one entry per two-sided prompt.
    script = ROOT / "2_preference_alignment" / "scripts" / "real_run.py"
    lessons = sorted(
        [*ROOT.glob("2_preference_alignment/*.md"), *ROOT.glob("translations/*/2_preference_alignment/*.md")]
    )
    before = [path.read_bytes() for path in lessons]
    done = subprocess.run(
        [sys.executable, str(script), "--smoke", "--out", str(tmp_path)], capture_output=True, text=True, timeout=1200
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("unsafe_refusal_rate", "safe_compliance_rate", "instruction_decline_rate", "decline_rate"):
        assert 0 <= metrics[f"{key}_before"] <= 1 and 0 <= metrics[f"{key}_after"] <= 1, key
    assert 0 < metrics["peak_memory_mb"] and metrics["settings"]["smoke"] is True
    replies = metrics["replies"]
    assert [r["label"] for r in replies] == ["safe", "unsafe", "instruction"] * 2
    assert {r["set"] for r in replies} == {"xstest", "instructions"}
    assert all(
        set(r) == {"set", "label", "type", "prompt", "before", "after", "score_before", "score_after"} for r in replies
    )
    assert 0 <= metrics["auc_before"] <= 1 and (tmp_path / "adapter" / "adapter_config.json").exists()
    assert not (RESULTS / "alignment-cpu.json").read_text().count('"smoke": true')  # a smoke run writes no result
    assert [path.read_bytes() for path in lessons] == before, "make real must leave the lessons as they are"
