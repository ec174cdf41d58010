"""Worked solution of 02_full_and_retain_models.ipynb.

The section replaces the stub cell with the same `# EXERCISE:` id when the course runner
(`unlearnlib course run`) executes the notebook; the names it uses are the notebook's.
"""

# %% EXERCISE: fq-by-hand
from unlearnlib.evaluation.tofu_metrics import forget_quality

fq_full = forget_quality(truth_ratios["full"], truth_ratios["retain"])
# Identical samples: KS statistic 0, p-value 1, the best score there is.
fq_retain = forget_quality(truth_ratios["retain"], truth_ratios["retain"])
