"""One padding helper for every batch of token rows (write, scoring and decoding passes)."""

from __future__ import annotations

import pytest
import torch

from agentmem.model.padding import pad_rows, pad_token_id


def test_right_padding_keeps_positions_and_masks_the_rest():
    ids, mask = pad_rows([[5, 6, 7], [8], []], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert ids.dtype == mask.dtype == torch.long


def test_left_padding_ends_every_row_at_the_last_column():
    ids, mask = pad_rows([[5, 6, 7], [8]], pad_id=9, left=True)
    assert ids.tolist() == [[5, 6, 7], [9, 9, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_all_empty_rows_still_give_one_column():
    ids, mask = pad_rows([[], []], pad_id=3)
    assert ids.shape == (2, 1) and not mask.any()


@pytest.mark.parametrize(("pad", "fallback", "want"), [(4, 0, 4), (None, 7, 7), (0, 7, 0)])
def test_pad_token_id_falls_back_only_when_the_tokenizer_has_none(pad, fallback, want):
    class Tok:
        pad_token_id = pad

    assert pad_token_id(Tok(), fallback) == want
