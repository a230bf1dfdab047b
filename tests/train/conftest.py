"""A tiny random backbone folder with a real (trained in-test) BPE tokenizer and chat template."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import tiny_model

TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CORPUS = ["My sister is called Marisol. My dog is Rex. I live in Porto and work as a baker.",
          "What is my sister's name? Where do I live? Got it, noted. The weather is nice today."]


def make_chat_backbone(folder: Path, seed: int = 0) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<|im_start|>",
                                                                  "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<|im_end|>")
    fast.chat_template = TEMPLATE
    model = tiny_model("llama", seed=seed, vocab_size=len(fast), pad_token_id=fast.pad_token_id,
                       eos_token_id=fast.eos_token_id, bos_token_id=None)
    model.generation_config.pad_token_id = fast.pad_token_id
    model.generation_config.eos_token_id = fast.eos_token_id
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def chat_backbone(tmp_path_factory) -> Path:
    return make_chat_backbone(tmp_path_factory.mktemp("tiny_chat") / "backbone")
