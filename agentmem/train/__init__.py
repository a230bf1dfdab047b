"""Training δ-mem adapters (`agentmem train`)."""

from agentmem.train.loop import TrainConfig, train

__all__ = ["TrainConfig", "train"]
