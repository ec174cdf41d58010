"""The `tiny` profile's model: a byte-level BPE tokenizer and a small LlamaForCausalLM.

Both are built from scratch, deterministically, so the whole course runs offline on a CPU.
The tokenizer has Llama 3's special tokens and a chat template that renders exactly the
Llama-3.2-Instruct structure, so the formatting code cannot tell it apart
from the real one.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from unlearnlib.data.tofu import CONFIGS, TofuSource, load_tofu, resolve_source
from unlearnlib.profiles import TinyModelSize

BOS, EOT, END_OF_TEXT = "<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>"
START_HEADER, END_HEADER = "<|start_header_id|>", "<|end_header_id|>"
SPECIAL_TOKENS = [BOS, END_OF_TEXT, START_HEADER, END_HEADER, EOT]

#: Llama 3's pre-tokenizer split: newlines stay a piece of their own, so the prompt
#: "...<|end_header_id|>\n\n" tokenises as a prefix of the prompt followed by the answer.
LLAMA3_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

#: The Llama-3.2-Instruct chat format (system block with the knowledge and today dates).
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if date_string is not defined %}{%- set date_string = '26 Jul 2024' %}{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content'] | trim %}"
    "{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\n' }}"
    "{{- 'Today Date: ' + date_string + '\\n\\n' }}"
    "{{- system_message + '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{- message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}"
)


def tokenizer_corpus(source: str | TofuSource | None = "mini") -> list[str]:
    """Every text of a TOFU source in a fixed order, each followed by the chat scaffolding.

    The scaffolding (system block, role names, newlines) appears in every training sequence,
    so the BPE sees it as often as the chats do and compresses it to a few tokens: shorter
    sequences make the tiny model train faster.
    """
    from unlearnlib.data.formatting import DATE_STRING, SYSTEM_PROMPT

    scaffolding = ("system\n\nCutting Knowledge Date: December 2023\nToday Date: "
                   f"{DATE_STRING}\n\n{SYSTEM_PROMPT}", "user\n\n", "assistant\n\n")
    src = resolve_source(source)
    texts = []
    for config in CONFIGS:
        for row in load_tofu(config, src):
            for text in _strings(row.values()):
                texts.extend((text, *scaffolding))
    return texts


def _strings(values: Iterable[object]) -> list[str]:
    out: list[str] = []
    for value in values:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            out.extend(_strings(value))
    return out


def build_tokenizer(vocab_size: int = 3000,
                    source: str | TofuSource | None = "mini") -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on TOFU-mini's text; same corpus and size give the same vocabulary.

    Byte-level means any text (real TOFU included) tokenises, only less compactly.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(tokenizer_corpus(source), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOT,
        additional_special_tokens=[END_OF_TEXT, START_HEADER, END_HEADER],
        model_max_length=512, clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def build_model(tokenizer: PreTrainedTokenizerFast, size: TinyModelSize | None = None,
                seed: int = 0) -> LlamaForCausalLM:
    """A freshly initialised small Llama (tied embeddings, like Llama-3.2-1B), seeded."""
    size = size or TinyModelSize()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_hidden_layers,
        num_attention_heads=size.num_attention_heads,
        num_key_value_heads=size.num_attention_heads,
        max_position_embeddings=size.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # On CPU, eager attention with a padding mask is ~9x faster than SDPA at this size.
    model.set_attn_implementation("eager")
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    return model
