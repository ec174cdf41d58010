"""Stage 3 (notebooks 02, 05): answer likelihoods, generation, TOFU's metrics and logs."""
