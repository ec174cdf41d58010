"""Worked solutions of 01_tofu_data.ipynb.

Each section replaces the stub cell with the same `# EXERCISE:` id when the course runner
(`unlearnlib course run`) executes the notebook; the names it uses are the notebook's.
"""

# %% EXERCISE: last-rows
from unlearnlib.data.tofu import FORGET_PERCENT

n_forget = len(full) * FORGET_PERCENT[FORGET_SPLIT] // 100
last_rows = full.select(range(len(full) - n_forget, len(full)))

# %% EXERCISE: decode-labels
learned = tokenizer.decode([t for t in encoded.labels if t != IGNORE_INDEX],
                           clean_up_tokenization_spaces=False)
