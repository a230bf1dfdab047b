"""Memory recurrences (see README.md here for the math and the derivation of the fast form)."""

from agentmem.ops.delta_rule import (
    delta_rule,
    delta_rule_chunked,
    delta_rule_read,
    delta_rule_reference,
    delta_rule_step,
)

__all__ = ["delta_rule", "delta_rule_chunked", "delta_rule_read", "delta_rule_reference",
           "delta_rule_step"]
