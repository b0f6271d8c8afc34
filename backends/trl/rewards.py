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
    """Gold answers are wrapped in $...$ so math-verify reads them as LaTeX."""
    text = str(answer).strip()
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
