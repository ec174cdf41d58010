"""Stage 6 (notebooks 00, 07): notebook set-up, the papermill runner, exercises, sweeps and
model cards."""
