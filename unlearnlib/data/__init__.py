"""Stage 1 (notebook 01): TOFU and TOFU-mini, and the chat format the models see."""
