"""Worked solution of 06_leak_audit.ipynb.

The section replaces the stub cell with the same `# EXERCISE:` id when the course runner
(`unlearnlib course run`) executes the notebook; the names it uses are the notebook's.
"""

# %% EXERCISE: format-leak
shifted = audit.records[audit.records["family"] == "format_shift"]
paired = shifted[shifted["model"] == "npo"].merge(
    shifted[shifted["model"] == "retain"], on=["probe", "fact_id", "seed"],
    suffixes=("", "_retain"))
paired["novel"] = paired["recalled"] & ~paired["recalled_retain"]
npo_format_leak = paired.groupby("fact_id")["novel"].any().mean()
print(round(npo_format_leak, 3))
