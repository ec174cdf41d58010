"""The real Llama-3 tokenizer, built offline from Meta's BPE file in the `llama-models` package.

Llama-3.2-1B-Instruct's tokenizer on the Hub is gated; the same byte-level BPE (128,000 ranked
byte sequences, the Llama-3 split pattern, 256 special tokens from id 128000) ships with
`llama-models` as a tiktoken file. transformers' tiktoken converter turns it into a fast
tokenizer whose ids equal the Hub's, so the rehearsal path (stand-in models, real TOFU) runs
with real token counts and the real chat format without a download or a Hub token.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from tokenizers import processors
from transformers import PreTrainedTokenizerFast

from unlearnlib.models.tiny import BOS, CHAT_TEMPLATE, EOT

#: Llama-3.2's context length, as its tokenizer_config.json states it.
MODEL_MAX_LENGTH = 131072


def _meta_tokenizer() -> tuple[Path, str, dict[str, int]]:
    """Meta's BPE file, split pattern and special tokens (name -> id) from `llama-models`."""
    try:
        from llama_models.llama3 import tokenizer as meta
    except ImportError as error:
        raise ImportError(
            "The real Llama-3 tokenizer is built from the `llama-models` package's BPE file, "
            "which needs `llama-models` and `tiktoken`: pip install 'unlearnlib[rehearsal]'."
        ) from error
    instance = meta.Tokenizer.get_instance()
    return Path(meta.__file__).parent / "tokenizer.model", instance.pat_str, instance.special_tokens


def build_llama3_tokenizer() -> PreTrainedTokenizerFast:
    """Llama-3.2-Instruct's tokenizer from the local `llama-models` files (about 2 s).

    Special tokens sit at their real ids (<|begin_of_text|> 128000, <|eot_id|> 128009, ...);
    encoding with special tokens prepends <|begin_of_text|> as the Hub tokenizer does; eos is
    <|eot_id|> and pad = eos, as open-unlearning sets it; the chat template renders the
    Llama-3.2 system block with its knowledge and today dates (`unlearnlib.models.tiny`'s template).
    ``clean_up_tokenization_spaces`` is on as in the Hub's config: the published logs' texts
    were decoded that way (`generation.decode_text` applies it, since transformers 5 does not).
    """
    from transformers.convert_slow_tokenizer import TikTokenConverter

    bpe_file, pattern, special_tokens = _meta_tokenizer()
    # transformers 5 renamed the converter's argument (4.x: additional_special_tokens).
    parameters = inspect.signature(TikTokenConverter).parameters
    keyword = ("extra_special_tokens" if "extra_special_tokens" in parameters
               else "additional_special_tokens")
    backend = TikTokenConverter(vocab_file=str(bpe_file), pattern=pattern,
                                **{keyword: special_tokens}).converted()
    backend.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
            special_tokens=[(BOS, special_tokens[BOS])]),
    ])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, eos_token=EOT, pad_token=EOT,
        model_max_length=MODEL_MAX_LENGTH, clean_up_tokenization_spaces=True,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
