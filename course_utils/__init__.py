"""Helpers the course notebooks call, installed as a package (Colab too); maintainer tooling lives in `tools/`.

- `checks`: the exercises' checks: whether an answer is right, and if not, why.
- `cost`: wall time, peak memory and forward passes of a block of code.
- `data`: HH-RLHF, UltraFeedback and your own columns to TRL's prompt / chosen / rejected format.
- `evaluation`: preference accuracy, greedy generations and the judged score, before and after.
- `losses`: the DPO and ORPO losses from the papers' formulas, in plain PyTorch.
- `plotting`: training curves, the ORPO λ sweep, ORPO vs SFT→DPO.
- `profiles`: the `hub`, `local` and `offline` settings, and the precision each device gets.
- `refusal`: decline and repetition rates of replies.
- `sources`: the offline tiny model; for `local`, SmolLM2 from the course cache and the shipped HH-RLHF rows.
- `training`: fp32 model loading, chat-ready tokenizers, the trainers' common arguments and the SFT stage.
- `world`: the offline world's questions and the rule that judges replies.
"""

__version__ = "0.1.0"
