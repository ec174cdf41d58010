"""unlearnlib: the helper library of a notebook course on machine unlearning for LLMs.

One folder per stage of the course, each module one job; a lower stage never imports a
higher one: `data` (TOFU, TOFU-mini, the chat format) < `models` (loading, the tiny Llama,
stand-ins) < `evaluation` (likelihoods, generation, TOFU's metrics) < `train` (losses,
fine-tuning, unlearning, the model zoo) < `audit` (the leak audit) < `course` (notebook
set-up, the runner, sweeps, cards). At the top: `profiles`, `paths`, `cache`, `checks`,
`display`, `parallel`, `plots`, and `cli`.
"""

__version__ = "0.1.0"
