"""The LLM sees only the most recent messages, starting at a user message."""

from __future__ import annotations

from pipecat.processors.aggregators.llm_context import LLMContext

from bot.context_window import trim_context


def _conversation(exchanges: int) -> LLMContext:
    messages = []
    for i in range(exchanges):
        messages.append({"role": "user", "content": f"question {i}"})
        messages.append({"role": "assistant", "content": f"answer {i}"})
    messages.append({"role": "user", "content": "last question"})
    return LLMContext(messages=messages)


def test_short_context_is_left_alone() -> None:
    context = _conversation(3)
    assert trim_context(context, 16) == 0
    assert len(context.get_messages()) == 7


def test_long_context_keeps_the_most_recent_messages_from_a_user_turn() -> None:
    context = _conversation(20)  # 41 messages
    dropped = trim_context(context, 6)
    kept = context.get_messages()
    assert dropped == 41 - len(kept)
    assert len(kept) <= 6
    assert kept[0]["role"] == "user", "the window must not start with an orphan answer"
    assert kept[-1]["content"] == "last question"
    assert [m["content"] for m in kept[:2]] == ["question 18", "answer 18"]
