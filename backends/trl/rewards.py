"""Rewards for math answers, checked with math-verify; malformed completions score 0 and are counted."""

from __future__ import annotations

import re
from collections import Counter

BOXED = re.compile(r"\\boxed\{")
HASHES = re.compile(r"####\s*([^\n]+)")


def _completion_text(completion) -> str:
    """TRL passes plain strings, or one-message lists for conversational prompts."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


def _gold(answer: str) -> str:
    """The gold answer of a reference: the text after #### (GSM8K), the last \\boxed{} (MATH solutions) or the whole
    value, wrapped in $...$ so math-verify reads it as LaTeX."""
    text = str(answer).strip()
    text = extract_answer(text) or text
    return text if text.startswith("$") else f"${text}$"


def extract_answer(text: str) -> str | None:
    """The final answer of a completion: the last \\boxed{...} (balanced braces), else the text after ####."""
    starts = [m.end() for m in BOXED.finditer(text)]
    if starts:
        i, depth = starts[-1], 1
        for j in range(i, len(text)):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                return "\\boxed{" + text[i:j] + "}"
        return None  # unbalanced
    found = HASHES.findall(text)
    return found[-1].strip() if found else None


class MathAnswerReward:
    """1.0 if the completion's final answer equals the gold answer under math-verify, else 0.0.

    The final answer is the last \\boxed{} or ####; with `fallback=True` (default) a completion with neither is
    given to math-verify whole, which takes its last expression (small models rarely box their answers). Never
    raises: a completion without an answer, or one math-verify cannot parse, scores 0 and is counted in
    `self.stats` ("no_answer", "unparsable", "correct", "wrong", and "unboxed" for fallback answers).
    """

    __name__ = "math_answer"

    def __init__(self, answer_column: str = "answer", fallback: bool = True):
        self.answer_column = answer_column
        self.fallback = fallback
        self.stats: Counter = Counter()

    def score(self, completion, answer) -> float:
        from math_verify import parse, verify

        text = _completion_text(completion)
        answer_text = extract_answer(text)
        if answer_text is None and self.fallback and text.strip():
            answer_text = text
            self.stats["unboxed"] += 1
        if answer_text is None:
            self.stats["no_answer"] += 1
            return 0.0
        try:
            gold, guess = parse(_gold(answer)), parse(answer_text)
            ok = bool(gold) and bool(guess) and verify(gold, guess)
        except Exception:  # math-verify can raise on pathological input; a reward must not
            self.stats["unparsable"] += 1
            return 0.0
        self.stats["correct" if ok else "wrong"] += 1
        return 1.0 if ok else 0.0

    def __call__(self, prompts=None, completions=(), **kwargs) -> list[float]:
        answers = kwargs.get(self.answer_column)
        if answers is None:
            raise ValueError(f"the dataset has no {self.answer_column!r} column for the reward")
        return [self.score(c, a) for c, a in zip(completions, answers, strict=True)]


def format_reward(prompts=None, completions=(), **kwargs) -> list[float]:
    """0.1 for a completion that states a final answer (\\boxed{} or ####), else 0: an optional shaping term."""
    return [0.1 if extract_answer(_completion_text(c)) is not None else 0.0 for c in completions]


def parity_reward(completions, **kwargs) -> list[float]:
    """A test signal for random models: the parity of the completion's first character."""
    return [float(ord(t[0]) % 2) if t else 0.0 for t in map(_completion_text, completions)]


def reward_registry() -> dict:
    """Reward functions by name: this package's and `trl grpo`'s."""
    from trl.rewards import (
        accuracy_reward,
        get_soft_overlong_punishment,
        reasoning_accuracy_reward,
        think_format_reward,
    )

    return {
        "math_answer": MathAnswerReward(), "format": format_reward, "parity": parity_reward,
        "accuracy_reward": accuracy_reward, "reasoning_accuracy_reward": reasoning_accuracy_reward,
        "think_format_reward": think_format_reward,
        "get_soft_overlong_punishment": get_soft_overlong_punishment(max_completion_len=1280, soft_punish_cache=256),
    }


def resolve_reward_funcs(names: list[str] | None, reward_model: str | None = None) -> list:
    """`trl grpo`'s rule: registry names or dotted import paths (the working directory is importable), plus a reward
    model id; `math_answer` when nothing is given. An unknown name is a one-line ValueError listing the choices."""
    import importlib
    import os
    import sys

    registry = reward_registry()
    funcs = [reward_model] if reward_model else []
    for name in names or ([] if reward_model else ["math_answer"]):
        if name in registry:
            funcs.append(registry[name])
        elif "." in name:
            module_name, _, attr = name.rpartition(".")
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            try:
                funcs.append(getattr(importlib.import_module(module_name), attr))
            except (ImportError, AttributeError) as exc:
                raise ValueError(f"reward_funcs: cannot import {name!r} ({exc})") from None
        else:
            raise ValueError(f"reward_funcs: unknown reward {name!r}; use one of {', '.join(registry)} or a dotted "
                             "import path")
    return funcs
