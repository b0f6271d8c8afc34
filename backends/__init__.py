"""Real training backends that call `cures.policies` (torch, transformers and TRL are imported only here)."""
