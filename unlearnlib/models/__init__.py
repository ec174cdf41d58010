"""Stage 2 (notebook 02): loading and saving models, the tiny Llama, the shipped weights and
the Llama-3 stand-ins."""
