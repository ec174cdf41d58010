"""Worked solutions of 04_unlearning.ipynb.

Each section replaces the stub cell with the same `# EXERCISE:` id when the course runner
(`unlearnlib course run`) executes the notebook; the names it uses are the notebook's.
"""

# %% EXERCISE: retain-drop
retain_drop = start["retain_prob"] - final["retain_prob"]
paid_most = retain_drop.idxmax()
print(retain_drop.round(3))

# %% EXERCISE: fq-peak
peaks = history.loc[history.groupby("method", sort=False)["forget_quality"].idxmax()]
peak_epoch = peaks.set_index("method")["epoch"]
print(peak_epoch)
