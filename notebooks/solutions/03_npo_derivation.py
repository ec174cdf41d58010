"""Worked solution of 03_npo_derivation.ipynb.

The section replaces the stub cell with the same `# EXERCISE:` id when the course runner
(`unlearnlib course run`) executes the notebook; the names it uses are the notebook's.
"""

# %% EXERCISE: weight-tenth
# 2 sigmoid(beta r) = 0.1  =>  sigmoid(beta r) = 0.05  =>  beta r = log(0.05 / 0.95)
r_tenth = math.log(0.05 / 0.95) / BETA
