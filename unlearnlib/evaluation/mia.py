"""Membership-inference scores of answers: Min-K%, loss and zlib.

Kept beside the metrics rather than in the evaluation runner, so the audit can score
membership without importing `unlearnlib.evaluation.evaluate`.
"""

from __future__ import annotations

import zlib

from transformers import PreTrainedTokenizerBase

from unlearnlib.evaluation import tofu_metrics as tm
from unlearnlib.evaluation.generation import decode_text
from unlearnlib.evaluation.likelihood import AnswerScores


def membership_scores(scores: AnswerScores, tokenizer: PreTrainedTokenizerBase
                      ) -> dict[str, list[float]]:
    """Per-sample membership-inference scores (higher = less likely a training member).

    * ``mia_min_k``: Min-K% (k = 0.4), ``-mean`` of the 40 % lowest token log-probs of the
      answer, its final end-of-turn token excluded (as open-unlearning);
    * ``mia_loss``: the average loss ``-(1/|y|) sum_t log p(y_t | x, y_<t)``;
    * ``mia_zlib``: ``avg_loss / len(zlib.compress(answer text))`` (Carlini et al. 2021),
      the text decoded from the label tokens as the tokenizer decodes by default.
    """
    min_k = [tm.min_k_score(lp[:-1]) for lp in scores.token_logprobs]
    clean_up = bool(getattr(tokenizer, "clean_up_tokenization_spaces", False))
    texts = [decode_text(tokenizer, ids.tolist(), clean_up) for ids in scores.label_ids]
    zlib_scores = [float(loss) / len(zlib.compress(text.encode("utf-8")))
                   for loss, text in zip(scores.avg_loss, texts, strict=True)]
    return {"mia_min_k": min_k, "mia_loss": [float(x) for x in scores.avg_loss],
            "mia_zlib": zlib_scores}
