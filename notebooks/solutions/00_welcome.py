"""Worked solutions of 00_welcome.ipynb.

Each section replaces the stub cell with the same `# EXERCISE:` id when the course runner
(`unlearnlib course run`) executes the notebook; the names it uses are the notebook's.
"""

# %% EXERCISE: profile
from unlearnlib.profiles import get_profile

my_profile = get_profile("tiny", unlearn_epochs=5, learning_rate=5e-4)

# %% EXERCISE: forget-share
share = len(splits["forget10"]) / len(splits["full"])
