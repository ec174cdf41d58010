"""What several test files share: where the real TOFU copy is, and a small model size."""

from pathlib import Path

from unlearnlib.profiles import TinyModelSize

REPO = Path(__file__).resolve().parents[1]
#: The real TOFU data and open-unlearning's published logs, beside the checkout.
SHARED_TOFU = REPO.parent / "shared" / "tofu"
LOG_ROOT = SHARED_TOFU / "eval_logs"
#: A one-layer Llama: trains in seconds, big enough for every code path.
SMALL = TinyModelSize(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64)
