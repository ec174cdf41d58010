"""GPU memory estimates: Llama-3.2-1B's counts, each formula by hand on a 2-layer Llama,
and the course table (meta device only: no weights, no download)."""

from __future__ import annotations

import pytest
from transformers import LlamaConfig

from unlearnlib import memory
from unlearnlib.cli import main
from unlearnlib.memory import (
    GIB,
    Memory,
    activation_bytes,
    course_memory_table,
    course_steps,
    kv_cache_bytes,
    llama_3_2_1b_config,
    logits_bytes,
    lora_parameter_count,
    parameter_count,
    to_markdown,
    training_state,
)
from unlearnlib.profiles import PROFILES

SEVEN = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

#: h = 64, 2 layers, 4 heads of 16, 2 KV heads (K and V are 64 x 32), MLP 128, vocab 100.
TINY = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, intermediate_size=128, vocab_size=100,
                   tie_word_embeddings=True, max_position_embeddings=64)


def test_llama_3_2_1b_counts():
    config = llama_3_2_1b_config()
    assert parameter_count(config) == 1_235_814_400
    assert lora_parameter_count(config, PROFILES["colab-t4"]) == 11_272_192


def test_counts_of_a_two_layer_llama_by_hand():
    layer = (64 * 64 + 64 * 32 + 64 * 32 + 64 * 64  # q, k, v, o
             + 3 * 64 * 128                         # gate, up, down
             + 2 * 64)                              # two RMSNorms
    assert parameter_count(TINY) == 100 * 64 + 2 * layer + 64  # tied embeddings, final norm
    per_rank = (64 + 64) + (64 + 32) + (64 + 32) + (64 + 64) + 3 * (64 + 128)
    rank4 = PROFILES["colab-t4"].replace(lora_rank=4)
    assert lora_parameter_count(TINY, rank4) == 2 * 4 * per_rank
    only_q = rank4.replace(lora_target_modules=("q_proj",))
    assert lora_parameter_count(TINY, only_q) == 2 * 4 * (64 + 64)


def test_component_formulas_by_hand():
    s, b = 10, 3
    assert activation_bytes(TINY, b, s, 2) == 2 * 34 * s * b * 64  # 2 layers x 34 sbh
    # each layer's input (2 sbh) plus one layer's full activations
    assert activation_bytes(TINY, b, s, 2, True) == 2 * 2 * s * b * 64 + 34 * s * b * 64
    assert activation_bytes(TINY, b, s, 4) == 2 * activation_bytes(TINY, b, s, 2)
    assert logits_bytes(TINY, b, 5, 2) == b * 5 * 100 * (2 + 4)
    assert kv_cache_bytes(TINY, b, 7, 2) == 2 * 2 * 2 * 16 * 7 * b * 2


def test_training_state_by_hand():
    n, a = 1000, 10
    lora = training_state(PROFILES["colab-t4"], n, a)
    assert lora == Memory(weights=n * 2 + a * 4, gradients=a * 4, optimizer=2 * a * 4)
    bf16 = training_state(PROFILES["gpu-full"], n, a)
    assert bf16 == Memory(weights=n * 2, gradients=n * 2, optimizer=4 * n)
    fp16 = training_state(PROFILES["colab-t4"].replace(use_lora=False), n, a)
    assert fp16 == Memory(weights=n * 6, gradients=n * 4, optimizer=8 * n)
    assert (lora + bf16).total == lora.total + bf16.total


def _step(profile, step, phase="train"):
    return next(s.memory for s in course_steps(profile, TINY, seq_len=32, answer_len=8)
                if s.step.startswith(step) and s.phase == phase)


def test_gradient_checkpointing_lowers_activations():
    full = PROFILES["gpu-full"]
    plain = _step(full, "unlearn: GradDiff")
    checkpointed = _step(full.replace(gradient_checkpointing=True), "unlearn: GradDiff")
    assert checkpointed.activations < plain.activations
    assert checkpointed.weights == plain.weights


def test_lora_cuts_the_optimizer_more_than_50_fold():
    config = llama_3_2_1b_config()
    full = PROFILES["gpu-full"]
    with_lora = course_steps(full.replace(use_lora=True), config)[2].memory
    without = course_steps(full, config)[2].memory
    assert without.optimizer > 50 * with_lora.optimizer


def test_paired_methods_hold_twice_the_batch_of_ga():
    t4 = PROFILES["colab-t4"]
    ga, pairs = _step(t4, "unlearn: GA"), _step(t4, "unlearn: GradDiff")
    assert pairs.logits == 2 * ga.logits
    assert (pairs.weights, pairs.optimizer) == (ga.weights, ga.optimizer)


def test_course_table_rows_and_fits():
    table = course_memory_table(seq_len=256, answer_len=64)
    assert list(table["profile"].unique()) == ["colab-t4", "gpu-full"]
    assert table.groupby("profile").size().tolist() == [6, 6]
    parts = [c for c in table.columns if c.endswith("_gib") and c not in ("total_gib", "gpu_gib")]
    assert (table[parts].sum(axis=1) - table["total_gib"]).abs().max() < 1e-9
    assert (table["fits"] == (table["total_gib"] <= table["gpu_gib"])).all()
    t4 = table[table["profile"] == "colab-t4"].set_index(["step", "phase"])
    # three fp16 models for evaluation: 3 x N x 2 bytes
    assert t4.loc[("evaluate (02, 05)", "generate"), "weights_gib"] == pytest.approx(
        3 * 1_235_814_400 * 2 / GIB)


def test_unknown_or_cpu_profiles_are_refused():
    with pytest.raises(ValueError, match="colab-t4, gpu-full"):
        course_memory_table(["tiny"])
    with pytest.raises(ValueError, match="Valid profiles"):
        course_memory_table(["laptop"])
    with pytest.raises(ValueError, match="depends on the GPU"):
        memory.precision_bytes(PROFILES["gpu-full"].replace(precision="auto"))


def test_to_markdown_formats_a_table():
    table = course_memory_table(["colab-t4"]).head(2)
    lines = to_markdown(table).splitlines()
    assert len(lines) == 4 and lines[0].startswith("| profile | step |")
    assert lines[1].count("---:") == 8  # the GiB columns
    assert lines[2].count("|") == len(table.columns) + 1 and "| yes |" in lines[2]


def test_cli_prints_both_profiles(capsys):
    assert main(["memory"]) == 0
    out = capsys.readouterr().out
    assert "colab-t4: 15 GiB GPU" in out and "gpu-full: 80 GiB GPU" in out
    assert out.count("audit (06)") == 4 and out.count("unlearn: GA (04)") == 2
    assert main(["memory", "--profile", "gpu-full", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "colab-t4" not in out and "| evaluate (02, 05) | generate |" in out


def test_cli_stops_quietly_when_the_reader_closes_the_pipe(monkeypatch):
    import sys

    def closed_pipe(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")  # what `unlearnlib memory | head` meets

    monkeypatch.setattr("unlearnlib.memory.course_memory_table", closed_pipe)
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # restored after main() drops it
    assert main(["memory"]) == 0
