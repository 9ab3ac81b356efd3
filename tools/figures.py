"""The lessons' figures and measured tables, drawn from the notebooks' runs by the course's own code.

Run `make solutions` or `make measure` (both notebooks, offline), then `python tools/figures.py` (`make figures`): it
writes the images and `measured.json` under `2_preference_alignment/images/` and the tables between
`<!-- measured:… -->` markers in the lessons and the notebooks' Markdown. `python tools/figures.py --tables`
(`make tables`) rewrites only the tables, from the committed `measured.json` and `benchmarks/results/`: the scripts
and benchmarks only write JSON, and nothing a learner runs rewrites a lesson. Tests check that the committed tables
match `measured.json` and that its numbers match every fresh run.

A maintainer's tool: it reads and writes the repository's folders, so it is not in the `course_utils` package that
learners install.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import torch

from course_utils import plotting, refusal
from course_utils.cost import hardware
from course_utils.losses import dpo_loss

try:
    from tools import judge, learner
except ModuleNotFoundError:  # run as a script: tools/ itself is on the path, not the repository
    import judge
    import learner

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "2_preference_alignment"
IMAGES = MODULE / "images"
RUNS = MODULE / "notebooks" / "runs"
MEASURED = IMAGES / "measured.json"
BENCHMARKS = ROOT / "benchmarks" / "results"  # `benchmarks/bench.py` writes here; `cost-<file stem>` blocks quote it
BETAS = [0.1, 0.5, 1.0]
BLOCK = re.compile(r"<!-- measured:(?P<name>[\w-]+) -->\n.*?<!-- /measured -->", re.S)


def collect(runs: Path = RUNS) -> dict:
    """What the lessons quote, read from the notebooks' `metrics.json` (offline profile)."""
    dpo = json.loads((runs / "dpo-offline" / "metrics.json").read_text())
    orpo = json.loads((runs / "orpo-offline" / "metrics.json").read_text())
    return {"hardware": hardware(), "dpo": dpo, "orpo": orpo}


def cost_table(bench: dict) -> str:
    """The benchmark's results as a Markdown table: absolute numbers, and ratios to the recipe measured in one run."""
    head = (
        f"| {bench['arch']} model ({bench['parameters'] / 1e6:.1f}M parameters), {bench['precision']}, "
        f"one run on {bench['hardware']}; memory: {bench['memory']} | s per step | tokens/s | peak memory (MB) "
        "| time per step vs recipe | tokens/s vs recipe | memory vs recipe | trained parameters |"
    )
    rows = [head, "|---|---|---|---|---|---|---|---|"]
    for name, r in bench["variants"].items():
        memory = "—" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.0f}"
        memory_ratio = "—" if r["memory_ratio"] is None else f"{r['memory_ratio']:.2f}×"
        rows.append(
            f"| {name} | {r['step_s']:.3f} | {r['tokens_per_s']:.0f} | {memory} | {r['step_time_ratio']:.2f}× "
            f"| {r['tokens_per_s_ratio']:.2f}× | {memory_ratio} | {r['trainable_params'] / 1e6:.2f}M |"
        )
    return "\n".join(rows)


def benchmark_tables(results: Path = BENCHMARKS) -> dict[str, str]:
    """One `cost-<stem>` table per benchmark result file (e.g. `cost-tiny-cpu`)."""
    return {f"cost-{p.stem}": cost_table(json.loads(p.read_text())) for p in sorted(results.glob("*.json"))}


def speed_table(r: dict) -> str:
    """`benchmarks/real_path.py`'s two speed-ups on SmolLM2-135M-Instruct, each measured before and after in one run."""
    e, (fp32, bf16) = r["evaluation"], r["dpo_step"]
    return "\n".join(
        [
            f"| SmolLM2-135M-Instruct, real harmless-base pairs, one run on {r['hardware']} "
            "| before | after | speed-up |",
            "|---|---|---|---|",
            f"| scoring {e['sequences']} held-out replies (tokens/s): previous code → sorted, left-padded, "
            f"output layer on the reply only | {e['before_tokens_per_s']:.0f} | {e['after_tokens_per_s']:.0f} "
            f"| {e['speedup']:.2f}× |",
            *(generation_row(r["generation"]) if "generation" in r else []),
            f"| one DPO step, 8 pairs, `max_length` 256 (s): fp32 → bf16 autocast, fp32 weights "
            f"| {fp32['step_s']:.1f} | {bf16['step_s']:.1f} | {r['dpo_step_speedup']:.2f}× |",
        ]
    )


def generation_row(g: dict) -> list[str]:
    """The generation speed-up's row of `speed_table`."""
    after = "bf16 autocast, 32" if g["after_bf16"] else "fp32, 32"
    return [
        f"| greedy replies to {g['prompts']} XSTest prompts, {g['max_new_tokens']} new tokens (tokens/s): "
        f"fp32, 16 a batch → {after} a batch | {g['before_tokens_per_s']:.0f} | {g['after_tokens_per_s']:.0f} "
        f"| {g['speedup']:.2f}× |"
    ]


def alignment_table(r: dict) -> str:
    """`make real`: SmolLM2-135M-Instruct before and after DPO with LoRA, on both sides and on held-out pairs."""
    rows = [
        (f"XSTest's unsafe prompts declined ({r['n_xstest_unsafe']})", "unsafe_refusal_rate"),
        (f"XSTest's safe prompts answered ({r['n_xstest'] - r['n_xstest_unsafe']})", "safe_compliance_rate"),
        (f"Self-Instruct's instructions declined ({r['n_instructions']})", "instruction_decline_rate"),
        (f"held-out red-team requests declined ({r['n_test_prompts']})", "decline_rate"),
        ("replies that loop (all of the above)", "repetition_rate"),
        (f"preference accuracy, reference-free ({r['n_test_pairs']} held-out pairs)", "preference_accuracy"),
    ]
    by_set = r["repetition_rate_by_set"]
    loops = {when: " / ".join(f"{by_set[when][k]:.2f}" for k in ("safe", "unsafe", "instruction")) for when in by_set}
    minutes = r["wall_time_s"] / 60
    return "\n".join(
        [
            f"| DPO with LoRA, {r['n_declining_pairs']} declining + {r['n_answering_pairs']} answering pairs, "
            f"{r['steps']} updates, {minutes:.0f} min and {r['peak_memory_mb']:,.0f} MB at peak on {r['hardware']} "
            "| before | after |",
            "|---|---|---|",
            *(f"| {label} | {r[key + '_before']:.3f} | {r[key + '_after']:.3f} |" for label, key in rows),
            f"| implicit reward accuracy (same pairs) | — | {r['implicit_reward_accuracy_after']:.3f} |",
            f"| replies that loop: safe / unsafe / instructions | {loops['before']} | {loops['after']} |",
        ]
    )


def estimate_table(r: dict) -> str:
    """`benchmarks/t4_estimate.py`: the least time each main training run needs at the card's published peak."""
    names = {"dpo": "DPO (policy and reference)", "orpo": "ORPO", "sft": "SFT on the chosen replies"}
    rows = [
        f"| {names[m]} | {run['epochs']} | {run['tokens_per_epoch'] / 1e3:.0f}k | {run['flops'] / 1e15:.2f} "
        f"| {run['seconds_at_peak']:.0f} s |"
        for m, run in r["runs"].items()
    ]
    return "\n".join(
        [
            f"| estimate, not measured: {r['card']} at its {r['peak_flops'] / 1e12:.0f} TFLOP/s fp16 peak, "
            f"{r['train_pairs']} pairs, `max_length` {r['max_length']} | epochs | tokens per epoch | PFLOP "
            "| time at peak |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )


def detector_table() -> str:
    """The decline detector's precision, recall and F1: on the course's own labels, and on replies labelled by people
    outside the course (XSTest's), beside XSTest's own string match."""
    own, people = judge.agreement(refusal.declines, judge.course_labelled()), judge.judge_report()
    everyone = f"{people['declines']['n']:,} chat-model replies to XSTest, labelled by people"
    everyone += f" ({people['declines']['n_declines']:,} decline)"
    unread = f"the {people['declines_unread']['n']} of them from the 2 models not looked at while writing the patterns"
    rows = [
        ("`refusal.declines`", f"{own['n']} replies labelled for the course ({own['n_declines']} decline)", own),
        ("`refusal.declines`", everyone, people["declines"]),
        ("XSTest's string match", everyone, people["string_match"]),
        ("`refusal.declines`", unread, people["declines_unread"]),
        ("XSTest's string match", unread, people["string_match_unread"]),
    ]
    lines = ["| judge | replies | precision | recall | F1 |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {on} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} |" for name, on, r in rows]
    return "\n".join(lines)


def quoted(reply: str, width: int = 90) -> str:
    """A reply on one line, cut at `width` characters."""
    line = " ".join(reply.split()).replace("|", "/")
    return f"“{line[:width]}…”" if len(line) > width else f"“{line}”"


def alignment_examples(replies: list[dict], n: int = 3) -> str:
    """`make real`'s replies that changed side: XSTest safe prompts answered before and declined after (over-refusal),
    and unsafe prompts declined only after; one of each type, in XSTest's order."""
    lines = []
    for label, title in (("safe", "Safe prompts now declined"), ("unsafe", "Unsafe prompts now declined")):
        flipped = [
            r
            for r in replies
            if r["label"] == label and refusal.declines(r["after"]) and not refusal.declines(r["before"])
        ]
        firsts = list({r["type"]: r for r in reversed(flipped)}.values())[::-1][:n]
        lines.append(f"- {title} ({len(flipped)} of {sum(r['label'] == label for r in replies)}):")
        for r in firsts:
            before = f"before {quoted(r['before'])}, " if label == "safe" else ""  # unsafe answers are not quoted
            lines.append(f"  - *{r['type']}*: “{r['prompt']}” {before}after {quoted(r['after'])}")
    return "\n".join(lines)


def real_path_tables(results: Path = BENCHMARKS / "real-path") -> dict[str, str]:
    """`real-path-<device>` (speed-ups) and `real-alignment-<device>` (`make real`) tables, from their JSON files;
    `real-alignment-<device>-examples` from the run's replies, where they are kept."""
    out = {}
    for path in sorted(results.glob("*.json")):
        r = json.loads(path.read_text())
        if path.stem.startswith("alignment-"):
            out[f"real-{path.stem}"] = alignment_table(r)
            kept = results / "replies" / path.name
            if kept.exists():
                out[f"real-{path.stem}-examples"] = alignment_examples(json.loads(kept.read_text())["replies"])
        elif path.stem == "t4-estimate":
            out[f"real-path-{path.stem}"] = estimate_table(r)
        elif path.stem != "t4-notebooks":  # the notebooks' time tables quote that one
            out[f"real-path-{path.stem}"] = speed_table(r)
    return out


T4_NOTEBOOKS = BENCHMARKS / "real-path" / "t4-notebooks.json"


def notebook_time_table(measured: dict, name: str, estimate: Path = T4_NOTEBOOKS) -> str:
    """How long a notebook takes: measured offline; on a T4 at hub settings, the FLOP floor and an estimate."""
    t4 = json.loads(estimate.read_text())
    runs = t4["notebooks"][name]
    share = t4["assumed_share_of_peak"]
    return "\n".join(
        [
            "| where | profile | how long |",
            "|---|---|---|",
            f"| {measured['hardware']} | offline | {measured[name]['notebook_runtime_s'] / 60:.1f} min, "
            "the whole notebook, measured |",
            f"| Colab, {t4['card']} | hub | at least {runs['floor_s'] / 60:.0f} min for its {len(runs['trainings'])} "
            f"trainings on {t4['train_pairs']:,} pairs, at the card's peak compute (counted from the model's FLOPs); "
            f"about {runs['estimated_training_s'] / 60:.0f} min if it sustains {share:.0%} of that peak (an "
            "assumption, typical for a model this small, not a measurement); loading, evaluation and generation "
            "come on top |",
        ]
    )


def tables(measured: dict) -> dict[str, str]:
    """The Markdown table of each `<!-- measured:name -->` block, from `measured.json` and the benchmark results."""
    dpo, orpo = measured["dpo"], measured["orpo"]
    o, s = orpo["comparison"]["orpo"], orpo["comparison"]["sft_dpo"]
    full, lora = dpo["full_vs_lora"]["full"], dpo["full_vs_lora"]["lora"]
    sweep_rows = [
        f"| {p['lambda']:g} | {p['preference_accuracy']:.3f} | {p['judged_score']:.3f} | {p['nll']:.3f} |"
        for p in orpo["sweep"]
    ]
    return {
        **benchmark_tables(),
        **real_path_tables(),
        "decline-detector": detector_table(),
        "dpo-notebook-time": notebook_time_table(measured, "dpo"),
        "orpo-notebook-time": notebook_time_table(measured, "orpo"),
        "dpo": "\n".join(
            [
                f"| measure ({dpo['profile']} profile) | before DPO | after DPO |",
                "|---|---|---|",
                f"| held-out preference accuracy | {dpo['preference_accuracy_before']:.3f} "
                f"| {dpo['preference_accuracy_after']:.3f} |",
                f"| judged score (declines harmful requests, answers benign ones correctly) "
                f"| {dpo['judged_score_before']:.3f} | {dpo['judged_score_after']:.3f} |",
                f"| TRL's eval reward margin | — | {dpo['eval_rewards_margins']:.3f} |",
            ]
        ),
        "dpo-lora": "\n".join(
            [
                f"| {dpo['profile']} profile, one run on {measured['hardware']} | full DPO | DPO with LoRA r = 16 |",
                "|---|---|---|",
                f"| trained parameters | {full['trainable_params'] / 1e6:.2f}M "
                f"| {lora['trainable_params'] / 1e6:.2f}M |",
                "| separate reference model in memory | yes | no: the adapters switched off |",
                f"| held-out preference accuracy after | {full['preference_accuracy_after']:.3f} "
                f"| {lora['preference_accuracy_after']:.3f} |",
                f"| judged score after | {full['judged_score_after']:.3f} | {lora['judged_score_after']:.3f} |",
                f"| training time (s) | {full['train_runtime_s']:.1f} | {lora['train_runtime_s']:.1f} |",
                f"| peak memory, growth of resident memory (MB) | {full['peak_memory_mb']:.0f} "
                f"| {lora['peak_memory_mb']:.0f} |",
            ]
        ),
        "orpo-sweep": "\n".join(
            [
                "| λ | held-out preference accuracy | judged score | held-out NLL of chosen replies |",
                "|---|---|---|---|",
                *sweep_rows,
            ]
        ),
        "orpo-comparison": "\n".join(
            [
                f"| {orpo['profile']} profile, one run on {measured['hardware']} | ORPO | SFT→DPO |",
                "|---|---|---|",
                f"| held-out preference accuracy | {o['preference_accuracy']:.3f} | {s['preference_accuracy']:.3f} |",
                f"| judged score | {o['judged_score']:.3f} | {s['judged_score']:.3f} |",
                f"| forward passes per optimizer step | {o['forward_passes_per_step']:g} "
                f"| {s['forward_passes_per_step']:g} |",
                f"| optimizer steps | {o['steps']} | {s['steps']} |",
                f"| total training time (s) | {o['train_runtime_s']:.1f} | {s['train_runtime_s']:.1f} |",
                f"| time per step, ORPO vs the DPO stage (s) | {o['step_time_s']:.3f} | {s['step_time_s']:.3f} |",
                f"| peak memory, growth of resident memory (MB) | {o['peak_memory_mb']:.0f} "
                f"| {s['peak_memory_mb']:.0f} |",
            ]
        ),
    }


def fill_tables(text: str, measured: dict) -> str:
    """`text` with every measured block replaced by its table; raise on a block name `tables` does not know."""
    known = tables(measured)

    def fill(match: re.Match) -> str:
        name = match["name"]
        if name not in known:
            raise KeyError(f"unknown measured block {name!r}; known: {sorted(known)}")
        return f"<!-- measured:{name} -->\n{known[name]}\n<!-- /measured -->"

    return BLOCK.sub(fill, text)


def plot_dpo_loss(
    betas: list[float], margin: float = 20.0, title: str = "", path: str | Path | None = None
) -> plt.Figure:
    """The DPO loss of one pair against its log-ratio margin, one curve per β, next to the weight its gradient gets."""
    margins = torch.linspace(-margin, margin, 401)
    zeros = torch.zeros_like(margins)
    fig, (loss_ax, weight_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for beta in betas:
        # Per pair: policy log-ratio of the chosen reply = margin, of the rejected reply = 0.
        losses = [dpo_loss(m.view(1), zeros[:1], zeros[:1], zeros[:1], beta=beta).item() for m in margins]
        loss_ax.plot(margins, losses, label=f"β = {beta:g}")
        weight_ax.plot(margins, beta * torch.sigmoid(-beta * margins), label=f"β = {beta:g}")
    loss_ax.set_title("DPO loss of one pair", fontsize=10)
    weight_ax.set_title("Weight of its gradient: β·σ(-β·m)", fontsize=10)
    for ax in (loss_ax, weight_ax):
        ax.set_xlabel("margin m = log π/π_ref (chosen) - log π/π_ref (rejected)")
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return plotting.finish(fig, title, path)


def draw(measured: dict, out_dir: Path = IMAGES) -> list[Path]:
    """The lessons' three figures as PNG files."""
    orpo = measured["orpo"]
    label = f"{orpo['profile']} profile, {measured['hardware']}"
    paths = [out_dir / "dpo_loss_vs_margin.png", out_dir / "orpo_lambda_sweep.png", out_dir / "orpo_vs_sft_dpo.png"]
    plot_dpo_loss(BETAS, path=paths[0])
    plotting.plot_sweep(orpo["sweep"], title=f"ORPO: the loss weight λ ({orpo['profile']} profile)", path=paths[1])
    plotting.plot_comparison(orpo["comparison"], title=f"ORPO vs SFT→DPO, measured in one run ({label})", path=paths[2])
    return paths


def refresh_lessons() -> None:
    """Rewrite every measured table in the English lessons, CONTRIBUTING.md (the maintainers' tables) and the
    notebooks' Markdown from `measured.json`, then the learners' copies of the notebooks from them."""
    measured = json.loads(MEASURED.read_text(encoding="utf-8"))
    maintainers = [page for page in [MODULE.parent / "CONTRIBUTING.md"] if page.exists()]
    for lesson in [*sorted(MODULE.glob("*.md")), *maintainers]:
        text = lesson.read_text(encoding="utf-8")
        filled = fill_tables(text, measured)
        if filled != text:
            lesson.write_text(filled, encoding="utf-8")
    for path in sorted((MODULE / "notebooks").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "markdown":
                cell.source = fill_tables(cell.source, measured)
        nbformat.write(notebook, path)
    learner.main([], source_dir=MODULE / "notebooks")  # the copies of these notebooks, not of the checkout's


def main(argv: list[str] | None = None) -> None:
    """Regenerate `measured.json`, the figures and the lessons' tables from the latest notebook runs."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--tables",
        action="store_true",
        help="only rewrite the lessons' tables from the committed measured.json and benchmark results (no runs read)",
    )
    args = parser.parse_args(argv)
    if args.tables:
        refresh_lessons()
        return
    measured = collect()
    IMAGES.mkdir(parents=True, exist_ok=True)
    MEASURED.write_text(json.dumps(measured, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for path in draw(measured):
        print(path)
    refresh_lessons()


if __name__ == "__main__":
    main()
