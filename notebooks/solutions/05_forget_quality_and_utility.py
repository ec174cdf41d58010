"""Worked solutions of 05_forget_quality_and_utility.ipynb.

Each section replaces the stub cell with the same `# EXERCISE:` id when the course runner
(`unlearnlib course run`) executes the notebook; the names it uses are the notebook's.
"""

# %% EXERCISE: harmonic-mean
mu_npo = len(components) / (1 / components["npo"]).sum()

# %% EXERCISE: noise-floor
if spread is not None and floor is not None:
    share_at_floor = (spread["forget_quality"] >= floor["forget_quality"]).mean()
    print(f"{share_at_floor:.0%} of the seeds reach the noise floor")
