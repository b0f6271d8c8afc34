"""Figures and reports for the gradient-variance theory and the policy comparisons (built on `cures`)."""

if __name__ != "cures.analysis":  # the folder analysis/ of a checkout, imported by its old top-level name
    raise ImportError(f"import cures.analysis, not {__name__}: since cures 0.2 every module lives under the one "
                      "namespace `cures` (`analysis` is also the name of an unrelated PyPI package)")

