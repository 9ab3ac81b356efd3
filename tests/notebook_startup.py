"""What the tests run in a notebook's kernel before its first cell (PYTHONSTARTUP, which IPython kernels execute).

- Always: a deprecation warning from the libraries the course teaches, or from the course's own code, stops the
  notebook, so API drift is fixed before a learner meets it.
- COURSE_SMOKE=1 (the hub and learner-copy runs): a few rows, short replies, and every trainer capped to two steps of
  two pairs of at most 128 tokens (fewer left nothing to log or plot); the notebook's recipe is otherwise unchanged.
"""

import dataclasses
import os
import warnings

for _category in (DeprecationWarning, FutureWarning):
    warnings.filterwarnings(
        "error", category=_category, module=r"(transformers|trl|datasets|peft|accelerate|course_utils|__main__)\b"
    )

SMOKE_LENGTH = 128
SMOKE_ROWS = {"train_rows": 32, "test_rows": 4, "ultrafeedback_rows": 8, "two_sided_prompts": 6}
SMOKE_REPLY_TOKENS = 16  # generation is most of a smoke run's time: 16 tokens still show a decline or a repeat

if os.environ.get("COURSE_SMOKE") == "1":
    from trl import DPOTrainer, SFTTrainer
    from trl.experimental.orpo import ORPOTrainer

    from course_utils import data, profiles

    _choose_profile = profiles.choose_profile

    def _few_rows():
        profile, reason = _choose_profile()
        rows = {
            key: value if getattr(profile, key) is None else min(value, getattr(profile, key))
            for key, value in SMOKE_ROWS.items()
        }
        replies = min(profile.max_new_tokens, SMOKE_REPLY_TOKENS)
        return dataclasses.replace(profile, **rows, max_new_tokens=replies), reason + "; COURSE_SMOKE=1: a few rows"

    profiles.choose_profile = _few_rows

    def _two_short_steps(init):
        def capped(self, *args, **kwargs):
            settings = kwargs["args"]
            settings.max_steps, settings.per_device_train_batch_size, settings.gradient_accumulation_steps = 2, 2, 1
            settings.max_length = min(settings.max_length, SMOKE_LENGTH)
            init(self, *args, **kwargs)

        return capped

    for _trainer in (DPOTrainer, ORPOTrainer, SFTTrainer):
        _trainer.__init__ = _two_short_steps(_trainer.__init__)
    _drop_long_prompts = data.drop_long_prompts

    def _short_prompts(rows, tokenizer, max_length):
        return _drop_long_prompts(rows, tokenizer, min(max_length, SMOKE_LENGTH))

    data.drop_long_prompts = _short_prompts
