"""Stage 4 (notebooks 03, 04): the losses, fine-tuning, unlearning, and the models they make."""
