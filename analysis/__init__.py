"""Figures and reports for the gradient-variance theory and the policy comparisons (built on `cures`)."""
