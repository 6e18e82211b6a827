from __future__ import annotations

import random

import pytest

from adapters.text.chunking import close_open_fence, fence_state, parse_fence_open, split_message

_WORDS = ["the", "agent", "replied", "with", "a", "longer", "sentence", "é", "🙂", "x=1;"]
_LANGUAGES = ["", "python", "js", "c++", "shell title=run"]


def _paragraph(rng: random.Random) -> str:
    lines = [
        " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 25)))
        for _ in range(rng.randint(1, 4))
    ]
    return "\n".join(lines)


def _code_block(rng: random.Random) -> str:
    marker = rng.choice(["```", "```", "~~~", "````"])
    lines = []
    for _ in range(rng.randint(0, 15)):
        indent = " " * rng.choice([0, 4, 8])
        lines.append(indent + " ".join(rng.choice(_WORDS) for _ in range(rng.randint(0, 6))))
    if marker == "````":
        lines.append("```")  # a shorter fence inside a longer one is content
    closing = marker + rng.choice(["", "", "  "])
    return "\n".join([marker + rng.choice(_LANGUAGES), *lines, closing])


def _random_reply(rng: random.Random, blocks: int) -> str:
    parts = []
    for _ in range(blocks):
        roll = rng.random()
        if roll < 0.55:
            parts.append(_paragraph(rng))
        elif roll < 0.85:
            parts.append(_code_block(rng))
        elif roll < 0.93:
            parts.append("w" * rng.randint(30, 400))
        else:
            parts.append("\n".join(f"- item {i}" for i in range(rng.randint(1, 6))))
    separators = ["\n\n", "\n", "\n\n\n", " \n\n"]
    return "".join(part + rng.choice(separators) for part in parts).rstrip()


def _is_fence_line(line: str) -> bool:
    return line.strip().startswith(("```", "~~~"))


def _match_chunk(text: str, chunk: str, pos: int) -> int:
    """Where `chunk` (without fence lines the splitter added) ends in `text`, if it
    continues `text` from `pos` after nothing but whitespace."""
    lines = chunk.split("\n")
    for drop_first in (0, 1):
        for drop_last in (0, 1):
            if drop_first + drop_last >= len(lines):
                continue
            if drop_first and parse_fence_open(lines[0]) is None:
                continue
            if drop_last and not _is_fence_line(lines[-1]):
                continue
            body = "\n".join(lines[drop_first : len(lines) - drop_last])
            found = text.find(body, pos)
            if found >= 0 and text[pos:found].strip() == "":
                return found + len(body)
    pytest.fail(f"chunk does not continue the text at {pos}: {chunk!r}")


def _assert_valid_split(text: str, chunks: list[str], limit: int) -> None:
    assert chunks, "a non-empty text gives at least one chunk"
    pos = 0
    for chunk in chunks:
        assert 0 < len(chunk) <= limit
        assert fence_state(chunk) is None, f"unbalanced fence in {chunk!r}"
        assert chunk == chunk.rstrip()
        assert chunk.split("\n", 1)[0].strip(), f"chunk starts with a blank line: {chunk!r}"
        pos = _match_chunk(text, chunk, pos)
    assert text[pos:].strip() == "", "text after the last chunk was lost"


@pytest.mark.parametrize("seed", range(300))
def test_random_replies_split_validly(seed: int) -> None:
    rng = random.Random(seed)
    text = _random_reply(rng, rng.randint(1, 14))
    limit = rng.choice([40, 60, 80, 120, 200, 500])
    chunks = split_message(text, limit)
    _assert_valid_split(text, chunks, limit)


@pytest.mark.parametrize("limit", [2000, 4096, 40000])
def test_platform_limits(limit: int) -> None:
    rng = random.Random(limit)
    text = _random_reply(rng, 1200)
    assert len(text) > 2 * limit
    chunks = split_message(text, limit)
    _assert_valid_split(text, chunks, limit)
    # Preferring boundaries must not make messages needlessly short.
    assert len(chunks) <= 2 * len(text) // limit + 1


def test_short_and_empty_text() -> None:
    assert split_message("", 10) == []
    assert split_message("exactly10!", 10) == ["exactly10!"]
    assert split_message("```py\nopen", 100) == ["```py\nopen"]


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        split_message("text", 0)


def test_prefers_paragraph_boundary() -> None:
    first = "First paragraph line one.\nline two of the first paragraph."
    second = "Second paragraph is here.\nAnd it goes on a little."
    assert split_message(f"{first}\n\n{second}", 80) == [first, second]


def test_prefers_line_boundary_over_word() -> None:
    lines = [f"line number {i} of a list without blank lines" for i in range(6)]
    chunks = split_message("\n".join(lines), 100)
    assert chunks == ["\n".join(lines[0:2]), "\n".join(lines[2:4]), "\n".join(lines[4:6])]


def test_word_boundary_inside_a_long_line() -> None:
    text = " ".join(f"word{i}" for i in range(40))
    chunks = split_message(text, 50)
    assert all(len(chunk) <= 50 for chunk in chunks)
    assert " ".join(chunks) == text
    assert all(chunk.split(" ")[-1].startswith("word") for chunk in chunks)


def test_long_word_is_cut_hard() -> None:
    assert split_message("x" * 250, 100) == ["x" * 100, "x" * 100, "x" * 50]
    assert split_message("short " + "y" * 120, 100) == ["short", "y" * 100, "y" * 20]


def test_early_boundary_does_not_make_a_tiny_chunk() -> None:
    text = "Hi\n\n" + " ".join(["words"] * 40)
    chunks = split_message(text, 100)
    assert len(chunks[0]) > 50
    assert chunks[0].startswith("Hi\n\nwords")


def test_fence_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"    value_{i} = compute({i})" for i in range(20))
    text = f"Here is the code:\n\n```python\n{code}\n```\n\nThat is all."
    chunks = split_message(text, 200)
    assert len(chunks) > 2
    assert chunks[0].startswith("Here is the code:\n\n```python\n    value_0")
    assert chunks[0].endswith("\n```")
    for chunk in chunks[1:-1]:
        assert chunk.startswith("```python\n    value_")
        assert chunk.endswith("\n```")
    assert chunks[-1].endswith("```\n\nThat is all.")
    _assert_valid_split(text, chunks, 200)


def test_cuts_before_a_fence_rather_than_inside_it() -> None:
    prose = " ".join(["prose"] * 20)
    code = "```js\n" + "\n".join(f"let v{i} = {i};" for i in range(6)) + "\n```"
    assert split_message(f"{prose}\n\n{code}", 130) == [prose, code]


def test_tilde_and_long_backtick_fences() -> None:
    inner = "\n".join(["```", "not a close", "```"] * 5)
    text = f"````markdown\n{inner}\n````"
    chunks = split_message(text, 60)
    assert chunks[0].startswith("````markdown\n")
    assert all(chunk.endswith("\n````") for chunk in chunks)
    assert all(chunk.startswith("````markdown\n") for chunk in chunks)
    tilde = "~~~\n" + "\n".join(["echo hello world"] * 10) + "\n~~~"
    chunks = split_message(tilde, 60)
    assert all(c.startswith("~~~\n") and c.endswith("\n~~~") for c in chunks)


def test_unclosed_fence_at_the_end_is_closed() -> None:
    text = "```python\n" + "\n".join(["print('streaming')"] * 10)
    chunks = split_message(text, 80)
    assert all(chunk.startswith("```python\n") and chunk.endswith("\n```") for chunk in chunks)


def test_trailing_spaces_after_a_closing_fence() -> None:
    text = "```py\n" + "x = 1\n" * 20 + "```   \n\nafter"
    chunks = split_message(text, 60)
    assert chunks[-1].endswith("x = 1\n```   \n\nafter")
    _assert_valid_split(text, chunks, 60)
    text = "```py\n" + "x = 1\n" * 20 + "```   \n"
    chunks = split_message(text, 60)
    assert chunks[-1].endswith("x = 1\n```")
    _assert_valid_split(text, chunks, 60)


def test_no_page_markers_or_footers() -> None:
    text = "\n\n".join(["paragraph " * 8] * 10)
    chunks = split_message(text, 100)
    assert all(chunk.strip() == ("paragraph " * 8).strip() for chunk in chunks)


def test_fence_state() -> None:
    assert fence_state("") is None
    assert fence_state("text ``` inline") is None
    assert fence_state("```python\nx = 1") == "```python"
    assert fence_state("```python\nx = 1\n```\nafter") is None
    assert fence_state("~~~\ncode\n```") == "~~~"
    assert fence_state("````\n```\n") == "````"
    assert fence_state("  ```sh\n") == "```sh"
    assert fence_state("```a```") is None


def test_close_open_fence() -> None:
    assert close_open_fence("plain **text") == "plain **text"
    assert close_open_fence("```python\nx = 1") == "```python\nx = 1\n```"
    assert close_open_fence("```python\nx = 1\n") == "```python\nx = 1\n```"
    assert close_open_fence("~~~~\nx") == "~~~~\nx\n~~~~"
    assert fence_state(close_open_fence("```\n")) is None


@pytest.mark.parametrize("limit", range(1, 25))
def test_tiny_limits_still_respect_the_limit(limit: int) -> None:
    # Too small for fence lines to fit: fences may be dropped, the limit never is.
    text = _random_reply(random.Random(limit), 6)
    chunks = split_message(text, limit)
    assert all(0 < len(chunk) <= limit for chunk in chunks)
    assert sum(len(chunk) for chunk in chunks) >= len("".join(text.split())) // 2


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def test_a_measure_other_than_characters_is_respected() -> None:
    emoji = "\U0001f600" * 2100  # 2,100 characters, 4,200 UTF-16 code units
    assert split_message(emoji, 4096) == [emoji]  # by characters it would fit
    chunks = split_message(emoji, 4096, _utf16)
    assert "".join(chunks) == emoji
    assert all(_utf16(chunk) <= 4096 for chunk in chunks)


@pytest.mark.parametrize("seed", range(30))
def test_measured_splits_keep_fences_balanced(seed: int) -> None:
    rng = random.Random(seed)
    text = _random_reply(rng, 6).replace("e", "\U0001f600")
    chunks = split_message(text, 80, _utf16)
    assert all(_utf16(chunk) <= 80 for chunk in chunks)
    assert all(fence_state(chunk) is None for chunk in chunks)
