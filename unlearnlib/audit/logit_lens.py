"""Logit lens: is the forgotten answer still on the model's mind in its middle layers?

nostalgebraist's logit lens reads an intermediate hidden state as if it were the last one:
project it through the model's final norm and LM head,

    logits_l = W_head · RMSNorm_final(h_l),   h_l = output of decoder layer l at the last position,

and look where the key span's first token ranks. An unlearned model may suppress a fact only
in its last layers (Lynch et al. 2024): the token then ranks high at some layer l < L while
the output (layer L, which is exactly the model's own next-token distribution) hides it.

Works for Llama-style causal LMs (`model.model.layers`, `model.model.norm`, the output
embeddings as head), batched over left-padded prompts; position ids follow the attention
mask, as in `generate`, so a padded prompt reads exactly like the same prompt alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from unlearnlib.data.formatting import pad_batch, pad_id, render_chat
from unlearnlib.models.loading import model_device


def key_span_first_tokens(tokenizer: PreTrainedTokenizerBase, key_span: str) -> list[int]:
    """The token ids a model would start the key span with.

    Two spellings: at the start of the answer, right after the assistant header (found by
    tokenising the chat prompt with and without the span, so a tokenizer that merges across
    the header is handled), and mid-sentence, after a space (" Paris" and "Paris" are
    different tokens in byte-level BPEs such as Llama 3's).
    """
    if not key_span.strip():
        raise ValueError("The key span is empty: this fact has nothing to look for; skip it.")
    prompt = render_chat(tokenizer, "")
    header = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    spoken = tokenizer(prompt + key_span.strip(), add_special_tokens=False)["input_ids"]
    start = next((i for i, (a, b) in enumerate(zip(header, spoken, strict=False)) if a != b),
                 len(header))
    mid_sentence = tokenizer(" " + key_span.strip(), add_special_tokens=False)["input_ids"]
    return list(dict.fromkeys([spoken[start], mid_sentence[0]]))


@torch.no_grad()
def lens_logits(model: PreTrainedModel, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
    """Float32 logits [batch, n_layers, vocab] of every decoder layer at the last position.

    The prompts must be left-padded (the last position is real for every row). Layer
    n_layers - 1 reproduces the model's own last-position logits.
    """
    if not bool(attention_mask[:, -1].all()):
        raise ValueError("The logit lens reads the last position: pad the prompts on the LEFT "
                         "(formatting.pad_batch(..., side='left')).")
    decoder = getattr(model, "model", None)
    if decoder is None or not hasattr(decoder, "layers") or not hasattr(decoder, "norm"):
        raise TypeError(f"{type(model).__name__} is not a Llama-style causal LM "
                        "(model.model.layers and model.model.norm); the lens needs both.")
    states: list[torch.Tensor] = []

    def keep_last(_module, _inputs, output) -> None:
        hidden = output[0] if isinstance(output, tuple) else output
        states.append(hidden[:, -1, :])

    handles = [layer.register_forward_hook(keep_last) for layer in decoder.layers]
    try:
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
              use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    hidden = torch.stack(states, dim=1)  # [batch, n_layers, hidden]
    return model.get_output_embeddings()(decoder.norm(hidden)).float()


@torch.no_grad()
def logit_lens_ranks(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                     prompts: Sequence[Sequence[int]], key_spans: Sequence[str],
                     batch_size: int = 16) -> np.ndarray:
    """Rank (0 = top-1) of each key span's first token at each layer: int array [n, n_layers].

    `prompts` are token ids ending where the answer would start (e.g.
    `formatting.encode_prompt`). A rank is the best over `key_span_first_tokens`' spellings:
    the number of vocabulary entries with a strictly larger lens logit. "In the top k" is
    `ranks < k`.
    """
    if len(prompts) != len(key_spans):
        raise ValueError(f"{len(prompts)} prompts but {len(key_spans)} key spans.")
    device = model_device(model)
    targets = [key_span_first_tokens(tokenizer, span) for span in key_spans]
    out = []
    for start in range(0, len(prompts), batch_size):
        ids, mask = pad_batch(prompts[start:start + batch_size], pad_id(tokenizer), "left")
        logits = lens_logits(model, ids.to(device), mask.to(device))
        for row, tokens in enumerate(targets[start:start + batch_size]):
            target = logits[row][:, tokens]  # [n_layers, n_spellings]
            ranks = (logits[row][:, None, :] > target[:, :, None]).sum(-1)
            out.append(ranks.min(dim=1).values.cpu())
    return torch.stack(out).numpy()
