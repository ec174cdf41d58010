"""Stage 5 (notebook 06): the leak audit: probe families, the recall rule, leak statistics."""
