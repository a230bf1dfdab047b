from __future__ import annotations

import pytest

from agentmem import DeltaMemConfig


def test_defaults_match_design():
    c = DeltaMemConfig()
    assert (c.rank, c.num_states, c.write_mode, c.branches) == (8, 1, "token", ("q", "o"))
    assert (c.alpha, c.beta_bias, c.init, c.init_gain) == (16.0, -1.5, "base_slice", 0.05)
    assert c.scale == 2.0 and c.target_layers is None


def test_sorted_json_round_trip():
    c = DeltaMemConfig(rank=16, num_states=4, write_mode="message", branches=["q", "k", "o"],
                       target_layers=[3, 1])
    text = c.to_json()
    assert DeltaMemConfig.from_json(text) == c
    assert text == DeltaMemConfig.from_json(text).to_json()
    assert list(__import__("json").loads(text)) == sorted(__import__("json").loads(text))


@pytest.mark.parametrize("kwargs, name", [
    ({"rank": 0}, "rank"), ({"rank": 2.5}, "rank"), ({"num_states": 0}, "num_states"),
    ({"write_mode": "chunk"}, "write_mode"), ({"branches": ("q", "x")}, "branches"),
    ({"branches": ()}, "branches"), ({"branches": ("q", "q")}, "branches"),
    ({"target_layers": ()}, "target_layers"), ({"target_layers": (1, 1)}, "target_layers"),
    ({"target_layers": (-1,)}, "target_layers"), ({"alpha": 0}, "alpha"),
    ({"alpha": float("nan")}, "alpha"), ({"beta_bias": float("inf")}, "beta_bias"),
    ({"init": "random"}, "init"), ({"rank": True}, "rank"),
])
def test_validation_names_the_bad_value(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DeltaMemConfig(**kwargs)


def test_unknown_json_key_rejected():
    with pytest.raises(ValueError, match="unknown"):
        DeltaMemConfig.from_json('{"rank": 8, "ranq": 4}')


def test_layer_indices_resolved_and_checked():
    assert DeltaMemConfig().layer_indices(3) == (0, 1, 2)
    assert DeltaMemConfig(target_layers=(2, 0)).layer_indices(3) == (0, 2)
    with pytest.raises(ValueError, match="out of range"):
        DeltaMemConfig(target_layers=(5,)).layer_indices(3)
