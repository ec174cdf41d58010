"""The unlearning trainer: pairing, the reference without a second model, LoRA, resume."""

import copy

import pytest
import torch
from peft import PeftModel
from shared import SMALL
from transformers import TrainerCallback

from unlearnlib.data.tofu import load_tofu
from unlearnlib.evaluation.likelihood import answer_probabilities, truth_ratios
from unlearnlib.evaluation.tofu_metrics import forget_quality
from unlearnlib.models.loading import load_model
from unlearnlib.models.tiny import build_model
from unlearnlib.profiles import get_profile, resolve_dtype
from unlearnlib.train.curves import TrainingCurves
from unlearnlib.train.losses import sequence_log_prob
from unlearnlib.train.prepare import prepare_model, save_trained
from unlearnlib.train.unlearn import (
    OBJECTIVE_DEFAULTS,
    ForgetRetainDataset,
    UnlearnTrainer,
    objective,
    unlearn,
    unlearning_arguments,
)


@pytest.fixture(scope="module")
def forget():
    return load_tofu("forget10", "mini").select(range(24))


@pytest.fixture(scope="module")
def retain():
    return load_tofu("retain90", "mini").select(range(60))


@pytest.fixture()
def profile():
    return get_profile("tiny", train_batch_size=4, eval_batch_size=8, unlearn_epochs=2,
                       learning_rate=3e-3, tiny_model=SMALL)


def _model(tokenizer, seed=0):
    return build_model(tokenizer, SMALL, seed=seed)


def _trainer(model, tokenizer, forget, retain, profile, tmp_path, goal, **kwargs):
    pairs = ForgetRetainDataset(forget, retain, tokenizer, seed=profile.seed)
    args = unlearning_arguments(profile, tmp_path / "run", len(pairs), **kwargs)
    return UnlearnTrainer(model, args, pairs, tokenizer, goal)


def test_objective_defaults_follow_the_spec():
    assert OBJECTIVE_DEFAULTS["npo"] == objective("npo")
    npo, simnpo = objective("npo"), objective("simnpo")
    assert (npo.beta, npo.alpha, npo.gamma) == (0.1, 1.0, 1.0)
    assert (simnpo.beta, simnpo.gamma, simnpo.delta, simnpo.alpha) == (4.5, 0.125, 0.0, 1.0)
    assert not objective("ga").uses_retain and objective("graddiff").uses_retain
    assert objective("npo", beta=0.3).beta == 0.3
    with pytest.raises(ValueError, match="Valid methods: ga, graddiff, npo, simnpo"):
        objective("dpo")


def test_retain_pairing_is_seeded_uniform_and_fresh_each_epoch(tiny_tokenizer, forget, retain):
    pairs = ForgetRetainDataset(forget, retain, tiny_tokenizer, seed=0)
    again = ForgetRetainDataset(forget, retain, tiny_tokenizer, seed=0)
    other_seed = ForgetRetainDataset(forget, retain, tiny_tokenizer, seed=1)
    epoch0 = [pairs.retain_index(i) for i in range(len(pairs))]
    assert epoch0 == [again.retain_index(i) for i in range(len(pairs))]
    assert epoch0 != [other_seed.retain_index(i) for i in range(len(pairs))]
    pairs.set_epoch(1)
    assert epoch0 != [pairs.retain_index(i) for i in range(len(pairs))]
    item = pairs[3]
    assert item["index"] == 3 and item["retain"] == pairs.retain[pairs.retain_index(3)]
    # Uniform over the retain rows: over many epochs every row is drawn, none dominates.
    draws = []
    for epoch in range(100):
        pairs.set_epoch(epoch)
        draws += [pairs.retain_index(i) for i in range(len(pairs))]
    counts = torch.bincount(torch.tensor(draws), minlength=len(retain))
    assert counts.min() > 10 and counts.max() < 80  # expected 40 each
    assert "retain" not in ForgetRetainDataset(forget, None, tiny_tokenizer)[0]


def _loss_and_grad(trainer, batch):
    model = trainer.model
    model.zero_grad()
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return loss.detach(), grads


def test_npo_precomputed_reference_equals_a_frozen_copy(tiny_tokenizer, forget, retain,
                                                        profile, tmp_path):
    """Full fine-tuning: log pi_ref looked up per forget index == an explicit reference model."""
    model = _model(tiny_tokenizer)
    frozen = copy.deepcopy(model).eval()
    trainer = _trainer(model, tiny_tokenizer, forget, retain, profile, tmp_path,
                       objective("npo"), max_steps=4)
    assert trainer.reference_log_probs is not None and trainer.reference_model is None
    trainer.train()  # move away from the reference, so pi != pi_ref below
    batch = trainer.data_collator([trainer.train_dataset[i] for i in (5, 0, 17, 9)])
    with torch.no_grad():
        ref = sequence_log_prob(frozen(input_ids=batch["forget"]["input_ids"],
                                       attention_mask=batch["forget"]["attention_mask"]).logits,
                                batch["forget"]["labels"])
    torch.testing.assert_close(trainer.reference_log_probs[batch["index"]], ref,
                               rtol=1e-5, atol=1e-4)
    looked_up = _loss_and_grad(trainer, batch)
    trainer.reference_log_probs, trainer.reference_model = None, frozen
    explicit = _loss_and_grad(trainer, batch)
    torch.testing.assert_close(looked_up, explicit, rtol=1e-4, atol=1e-5)
    # The comparison means something: training moved log pi away from log pi_ref.
    assert (_log_pi(trainer.model, batch) - ref).abs().min() > 1e-2


def _log_pi(model, batch):
    with torch.no_grad():
        logits = model(input_ids=batch["forget"]["input_ids"],
                       attention_mask=batch["forget"]["attention_mask"]).logits
    return sequence_log_prob(logits, batch["forget"]["labels"])


def test_lora_reference_is_the_base_with_the_adapter_disabled(tiny_tokenizer, forget, retain,
                                                              profile, tmp_path):
    lora = profile.replace(use_lora=True, lora_rank=4, lora_alpha=8)
    base = _model(tiny_tokenizer)
    frozen = copy.deepcopy(base).eval()
    model = prepare_model(base, lora)
    assert isinstance(model, PeftModel)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    trainer = _trainer(model, tiny_tokenizer, forget, retain, lora, tmp_path, objective("npo"),
                       max_steps=4)
    assert trainer.reference_log_probs is None  # no table: the adapter is switched off
    trainer.train()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in (2, 11, 7, 20)])
    adapter_off = _loss_and_grad(trainer, batch)
    trainer.reference_model = frozen
    explicit = _loss_and_grad(trainer, batch)
    torch.testing.assert_close(adapter_off, explicit, rtol=1e-5, atol=1e-6)
    assert (_log_pi(model, batch) - _log_pi(frozen, batch)).abs().min() > 1e-3


def test_lora_saves_merged_or_adapter_only(tiny_tokenizer, profile, tmp_path):
    lora = profile.replace(use_lora=True, lora_rank=4, lora_alpha=8)
    model = prepare_model(_model(tiny_tokenizer), lora)
    with torch.no_grad():  # a non-zero adapter, so merging changes the weights
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    ids = torch.tensor([tiny_tokenizer("Who wrote it?")["input_ids"]])
    with torch.no_grad():
        expected = model(ids).logits
    adapter = save_trained(model, tiny_tokenizer, tmp_path / "adapter", merge=False)
    assert (adapter / "adapter_model.safetensors").is_file()
    assert not (adapter / "model.safetensors").exists()
    merged = save_trained(model, tiny_tokenizer, tmp_path / "merged", merge=True)
    reloaded = load_model(merged).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, expected, rtol=1e-4, atol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_tokenizer, forget, retain,
                                                         profile, tmp_path):
    plain = _trainer(_model(tiny_tokenizer), tiny_tokenizer, forget, retain, profile,
                     tmp_path / "a", objective("npo"))
    checkpointed_model = prepare_model(_model(tiny_tokenizer),
                                       profile.replace(gradient_checkpointing=True))
    flag = ("is_activation_checkpointing" if hasattr(checkpointed_model,
            "activation_checkpointing_enable") else "is_gradient_checkpointing")  # 5 / 4 names
    assert getattr(checkpointed_model, flag)
    checkpointed = _trainer(checkpointed_model, tiny_tokenizer, forget, retain, profile,
                            tmp_path / "b", objective("npo"))
    batch = plain.data_collator([plain.train_dataset[i] for i in range(4)])
    plain.model.train()
    checkpointed.model.train()
    torch.testing.assert_close(_loss_and_grad(plain, batch), _loss_and_grad(checkpointed, batch))


def test_training_dtype_is_fp32_on_cpu(profile):
    assert resolve_dtype(profile, training=True) == torch.float32


class _StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def test_resumed_run_ends_with_the_same_weights(tiny_tokenizer, forget, retain, profile,
                                                tmp_path):
    """Stop at step 8 (inside epoch 2), resume from its checkpoint: same weights as one run."""
    method = "npo"
    whole = unlearn(_model(tiny_tokenizer), tiny_tokenizer, forget, retain, profile,
                    tmp_path / "whole", method)
    assert whole.state.global_step == 12  # 24 rows / batch 4 = 6 steps an epoch, 2 epochs
    stopped = unlearn(_model(tiny_tokenizer), tiny_tokenizer, forget, retain, profile,
                      tmp_path / "split", method, save_steps=4, callbacks=[_StopAt(8)])
    assert stopped.state.global_step == 8
    checkpoint = tmp_path / "split" / "checkpoint-8"
    assert (checkpoint / "model.safetensors").is_file()
    resumed = unlearn(_model(tiny_tokenizer), tiny_tokenizer, forget, retain, profile,
                      tmp_path / "split", method, save_steps=4,
                      resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 12
    first = dict(whole.model.named_parameters())
    for name, param in resumed.model.named_parameters():
        torch.testing.assert_close(param, first[name], rtol=0, atol=0, msg=name)
    start = dict(_model(tiny_tokenizer).named_parameters())
    assert not torch.equal(first["model.norm.weight"], start["model.norm.weight"])


def test_gradient_ascent_runs_without_retain_rows(tiny_tokenizer, forget, profile, tmp_path):
    trainer = unlearn(_model(tiny_tokenizer), tiny_tokenizer, forget, None, profile,
                      tmp_path, "ga", max_steps=2)
    losses = [entry for entry in trainer.state.log_history if "forget_loss" in entry]
    assert losses and all("retain_nll" not in entry for entry in losses)
    assert losses[-1]["loss"] < 0  # -NLL
    with pytest.raises(ValueError, match="needs retain rows"):
        unlearn(_model(tiny_tokenizer), tiny_tokenizer, forget, None, profile, tmp_path, "npo",
                max_steps=1)


def test_training_curves_record_what_the_evaluator_measures(tiny_tokenizer, forget, retain,
                                                            profile, tmp_path):
    forget_perturbed = load_tofu("forget10_perturbed", "mini").select(range(12))
    retain_perturbed = load_tofu("retain_perturbed", "mini").select(range(8))
    reference = truth_ratios(_model(tiny_tokenizer, seed=5), tiny_tokenizer, forget_perturbed)
    every_epoch = TrainingCurves(tiny_tokenizer, forget_perturbed, retain_perturbed, reference,
                                 every_n_epochs=1, batch_size=16)
    sparse = TrainingCurves(tiny_tokenizer, forget_perturbed, retain_perturbed,
                            every_n_epochs=3, batch_size=16)
    trainer = unlearn(_model(tiny_tokenizer), tiny_tokenizer, forget.select(range(8)), retain,
                      profile, tmp_path, "npo", callbacks=[every_epoch, sparse])
    assert [r["step"] for r in every_epoch.records] == [0, 2, 4]  # start and 2 epochs
    assert [r["step"] for r in sparse.records] == [0, 4]  # start and end
    assert "forget_quality" not in sparse.records[-1]
    last, model = every_epoch.records[-1], trainer.model
    assert last["forget_prob"] == pytest.approx(answer_probabilities(
        model, tiny_tokenizer, forget_perturbed).mean())
    assert last["retain_prob"] == pytest.approx(answer_probabilities(
        model, tiny_tokenizer, retain_perturbed).mean())
    assert last["forget_quality"] == pytest.approx(forget_quality(
        truth_ratios(model, tiny_tokenizer, forget_perturbed), reference))
    assert every_epoch.records[0]["forget_prob"] != last["forget_prob"]
    assert list(every_epoch.frame().columns) == ["step", "epoch", "forget_prob", "retain_prob",
                                                 "forget_truth_ratio", "forget_quality"]
