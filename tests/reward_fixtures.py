"""Misbehaving reward functions for the tests of `cures train` (imported by dotted path: reward_fixtures.NAME)."""

import math


def raising_reward(completions, **kwargs):
    return [len(c) / len(c) if i else {}["answer"] for i, c in enumerate(completions)]  # KeyError on the first


def infinite_reward(completions, **kwargs):
    return [math.inf if i == 1 else 0.0 for i in range(len(completions))]


def short_reward(completions, **kwargs):
    return [0.0] * (len(completions) - 1)


def half_unscorable_reward(completions, **kwargs):
    return [None if i % 2 else 1.0 for i in range(len(completions))]


def slow_reward(completions, **kwargs):
    import time

    time.sleep(30)
    return [0.0] * len(completions)
