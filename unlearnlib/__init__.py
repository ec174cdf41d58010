"""unlearnlib: the helper library of a notebook course on machine unlearning for LLMs.

One module, one job: `data` (TOFU and TOFU-mini), `formatting` (chat prompts and loss
masks), `tiny` (the CPU-sized Llama), `models` (loading), `profiles` (tiny / colab-t4 /
gpu-full), `paths` (where things live).
"""

__version__ = "0.1.0"
