"""Fine-tuning's progress lines: a few per run, always the last."""

from types import SimpleNamespace

from unlearnlib.train.trainer import EpochProgress


def _printed_epochs(epochs: int, lines: int, capsys) -> list[str]:
    progress = EpochProgress("tiny full", lines=lines)
    args = SimpleNamespace(num_train_epochs=epochs)
    progress.on_train_begin(args, None, None)
    for epoch in range(1, epochs + 1):
        state = SimpleNamespace(is_world_process_zero=True, epoch=float(epoch),
                                global_step=epoch * 7, max_steps=epochs * 7)
        progress.on_log(args, state, None, logs={"loss": 1.0 / epoch})
        progress.on_log(args, state, None, logs={"train_runtime": 1.0})  # not a loss log
    printed = capsys.readouterr().out.splitlines()
    return [line.split()[3] for line in printed]


def test_progress_prints_about_the_requested_lines_and_the_last_epoch(capsys):
    assert _printed_epochs(17, 6, capsys) == ["3/17", "6/17", "9/17", "12/17", "15/17", "17/17"]
    assert _printed_epochs(4, 6, capsys) == ["1/4", "2/4", "3/4", "4/4"]
    assert _printed_epochs(1, 6, capsys) == ["1/1"]
