"""Simulated RL training on synthetic prompts with latent pass rates (built on `cures.policies`)."""

if __name__ != "cures.simulator":  # the folder simulator/ of a checkout, imported by its old top-level name
    raise ImportError(f"import cures.simulator, not {__name__}: since cures 0.2 every module lives under the one "
                      "namespace `cures` (`simulator` is also the name of an unrelated PyPI package)")

