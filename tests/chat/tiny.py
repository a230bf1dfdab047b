"""A tiny random backbone on disk: 2-layer Llama/Qwen2 + a byte-level tokenizer with a chat template.

The template is Qwen2.5's (tools in the system header, ``<tool_call>`` markup), so the chat model's
tool path runs end to end; a second folder uses SmolLM2's template, which has no tool support.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tests.conftest import tiny_model

SPECIAL = ["<|pad|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2 = pad, bos, eos of TINY
ADDED = ["<tool_call>", "</tool_call>"]  # plain added tokens: they stay in decoded text

# Qwen2.5-Instruct's chat template (Apache-2.0), verbatim apart from whitespace control.
QWEN_TEMPLATE = (Path(__file__).parent / "qwen_template.jinja").read_text().rstrip("\n")

SMOL_TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                 "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by "
                 "Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' "
                 "+ message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt "
                 "%}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def byte_tokenizer(template: str = QWEN_TEMPLATE) -> PreTrainedTokenizerFast:
    """Every byte is a token (no merges); specials first so pad/bos/eos are ids 0/1/2."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {t: i for i, t in enumerate(SPECIAL)}
    vocab.update({ch: len(SPECIAL) + i for i, ch in enumerate(sorted(alphabet))})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", bos_token="<|im_start|>",
                                   eos_token="<|im_end|>")
    fast.add_tokens(ADDED)
    fast.chat_template = template
    return fast


@functools.cache
def tiny_backbone_dir(model_type: str = "qwen2", template: str = "qwen", ctx: int = 4096,
                      seed: int = 0) -> str:
    """A folder with a tiny random backbone and the byte tokenizer (made once per process)."""
    tok = byte_tokenizer(QWEN_TEMPLATE if template == "qwen" else SMOL_TEMPLATE)
    model = tiny_model(model_type, seed=seed, vocab_size=len(tok), max_position_embeddings=ctx)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    folder = Path(tempfile.mkdtemp(prefix=f"agentmem-tiny-{model_type}-{template}-"))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)
