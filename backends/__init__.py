"""Real training backends that call `cures.policies` (torch, transformers and TRL are imported only here)."""

if __name__ != "cures.backends":  # the folder backends/ of a checkout, imported by its old top-level name
    raise ImportError(f"import cures.backends, not {__name__}: since cures 0.2 every module lives under the one "
                      "namespace `cures` (`backends` is also the name of an unrelated PyPI package)")

