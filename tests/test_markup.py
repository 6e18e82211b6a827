from __future__ import annotations

import html
import random
import re
from html.parser import HTMLParser

import pytest

from adapters.text.discord_md import to_discord
from adapters.text.markdown import convert
from adapters.text.plain import to_plain_text
from adapters.text.slack_mrkdwn import to_slack_mrkdwn
from adapters.text.telegram_html import TelegramRenderer, to_telegram_html
from tests.fakes.telegram_api import EntityParseError, parse_html

_TELEGRAM_TAGS = {
    "b": set(),
    "i": set(),
    "s": set(),
    "code": {"class"},
    "pre": set(),
    "a": {"href"},
    "blockquote": set(),
}


class _TelegramChecker(HTMLParser):
    """Fails on anything Telegram's HTML parse mode would reject."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in _TELEGRAM_TAGS, f"unsupported tag <{tag}>"
        assert {name for name, _ in attrs} <= _TELEGRAM_TAGS[tag], f"bad attributes {attrs}"
        assert tag not in self.open, f"<{tag}> nested in itself"
        if self.open and self.open[-1] in ("code", "pre"):
            assert (self.open[-1], tag) == ("pre", "code"), f"<{tag}> inside code"
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open, f"</{tag}> closes nothing"
        assert self.open.pop() == tag, f"</{tag}> closes the wrong tag"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raise AssertionError(f"self-closing <{tag}/>")

    def handle_data(self, data: str) -> None:
        assert not set(data) & set("<>&"), f"unescaped text {data!r}"

    def handle_entityref(self, name: str) -> None:
        assert name in ("amp", "lt", "gt", "quot"), f"unsupported entity &{name};"

    def handle_charref(self, name: str) -> None:
        raise AssertionError(f"character reference &#{name};")


def _assert_valid_telegram(markup: str) -> None:
    parse_html(markup)  # the fake Bot API's TDLib rules raise on what the server refuses
    checker = _TelegramChecker()
    checker.feed(markup)
    checker.close()
    assert not checker.open, f"unclosed tags {checker.open} in {markup!r}"
    assert not checker.rawdata, f"unparsed trailing markup in {markup!r}"
    for value in re.findall(r'href="([^"]*)"', markup):
        assert not set(value) & set("<>"), f"unescaped href {value!r}"


_SLACK_LINK = re.compile(r"<(?:https?://|mailto:)[^<>|\s]+(?:\|[^<>]*)?>")


def _assert_valid_slack(markup: str) -> None:
    unquoted = re.sub(r"(?m)^> ", "", markup)
    rest = _SLACK_LINK.sub("", unquoted)
    assert not set(rest) & set("<>"), f"unescaped < or > in {markup!r}"
    assert re.fullmatch(r"(?:[^&]|&(?:amp|lt|gt);)*", rest, re.S), f"bare & in {markup!r}"


def _visible(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def test_checkers_reject_bad_markup() -> None:
    for bad in ["<b>open", "<u>x</u>", "a & b", "<b><i>x</b></i>", "<code><b>x</b></code>"]:
        with pytest.raises((AssertionError, EntityParseError)):
            _assert_valid_telegram(bad)
    for bad in ["a < b", "x & y", "<javascript:x|y>"]:
        with pytest.raises(AssertionError):
            _assert_valid_slack(bad)


# --- Telegram ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("md", "expected"),
    [
        ("**bold** and __bold__", "<b>bold</b> and <b>bold</b>"),
        ("*italic* and _italic_", "<i>italic</i> and <i>italic</i>"),
        ("~~gone~~", "<s>gone</s>"),
        ("use `pip install`", "use <code>pip install</code>"),
        ("[docs](https://example.com)", '<a href="https://example.com">docs</a>'),
        ("<https://example.com>", '<a href="https://example.com">https://example.com</a>'),
        ("# Title", "<b>Title</b>"),
        ("### Title with **bold** ###", "<b>Title with bold</b>"),
        ("- one\n* two\n  + three", "• one\n• two\n  • three"),
        ("1. first\n2) second", "1. first\n2) second"),
        (
            "> quoted **b**\n> more\n\nafter",
            "<blockquote>quoted <b>b</b>\nmore</blockquote>\n\nafter",
        ),
        ("---", "———"),
        ("***both***", "<i><b>both</b></i>"),  # CommonMark nests em outside strong
        ("*a **b** c*", "<i>a <b>b</b> c</i>"),
        ("**a *b* c**", "<b>a <i>b</i> c</b>"),
        ("**line one\nline two**", "<b>line one\nline two</b>"),
    ],
)
def test_telegram_constructs(md: str, expected: str) -> None:
    assert to_telegram_html(md) == expected
    _assert_valid_telegram(expected)


def test_telegram_escaping() -> None:
    assert to_telegram_html("a < b & c > d") == "a &lt; b &amp; c &gt; d"
    assert to_telegram_html('"quotes" stay') == '"quotes" stay'
    assert to_telegram_html("<b>not a tag</b>") == "&lt;b&gt;not a tag&lt;/b&gt;"


def test_telegram_code_is_escaped_not_formatted() -> None:
    assert to_telegram_html("`**x** <y> & _z_`") == "<code>**x** &lt;y&gt; &amp; _z_</code>"
    md = "```python\nif a < b:\n    print('**no** _format_')\n```"
    assert to_telegram_html(md) == (
        '<pre><code class="language-python">if a &lt; b:\n'
        "    print('**no** _format_')</code></pre>"
    )
    assert to_telegram_html("```\nplain\n```") == "<pre>plain</pre>"
    assert to_telegram_html("~~~sh\nls\n~~~") == '<pre><code class="language-sh">ls</code></pre>'


def test_telegram_links_with_special_characters() -> None:
    md = '[a & <b>](https://x.test/p_(1)?q=1&r="2")'
    assert to_telegram_html(md) == (
        '<a href="https://x.test/p_(1)?q=1&amp;r=&quot;2&quot;">a &amp; &lt;b&gt;</a>'
    )
    assert to_telegram_html("[run](javascript:alert(1))") == "run (javascript:alert(1))"
    assert to_telegram_html("[*it*](https://x.test)") == '<a href="https://x.test"><i>it</i></a>'
    nested = to_telegram_html("[see <https://a.test>](https://b.test)")
    assert nested == '<a href="https://b.test">see &lt;https://a.test&gt;</a>'


def test_telegram_unbalanced_markers_stay_literal() -> None:
    assert to_telegram_html("**bold") == "**bold"
    assert to_telegram_html("a ** b") == "a ** b"
    assert to_telegram_html("2 * 3 and x_") == "2 * 3 and x_"
    assert to_telegram_html("`open code") == "`open code"
    assert to_telegram_html("[text](https://exa") == "[text](https://exa"
    assert to_telegram_html("**a *b** c*") == "<i>a b c</i>"  # as CommonMark nests it


def test_telegram_words_and_urls_are_not_emphasis() -> None:
    assert to_telegram_html("snake_case_name") == "snake_case_name"
    assert to_telegram_html("see https://x.test/a_b_c and") == "see https://x.test/a_b_c and"
    assert to_telegram_html("**https://x.test/a_b**") == "<b>https://x.test/a_b</b>"
    assert to_telegram_html(r"\*not italic\*") == "*not italic*"


def test_telegram_streaming_partial_fence_is_closed() -> None:
    assert to_telegram_html("Here:\n```python\nx = 1 <") == (
        'Here:\n<pre><code class="language-python">x = 1 &lt;</code></pre>'
    )


def test_telegram_entities_as_the_server_parses_them() -> None:
    md = "**b** `c` [l](https://x.test)\n```python\nx = 1\n```"
    shown, entities = parse_html(to_telegram_html(md))
    assert shown == "b c l\nx = 1"
    assert entities == [
        {"type": "bold", "offset": 0, "length": 1},
        {"type": "code", "offset": 2, "length": 1},
        {"type": "text_link", "offset": 4, "length": 1, "url": "https://x.test"},
        {"type": "pre", "offset": 6, "length": 5, "language": "python"},
    ]


# --- Slack ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("md", "expected"),
    [
        ("**bold** and __bold__", "*bold* and *bold*"),
        ("*italic* and _italic_", "_italic_ and _italic_"),
        ("~~gone~~", "~gone~"),
        ("use `a < b`", "use `a &lt; b`"),
        ("```python\nx = a & b\n```", "```\nx = a &amp; b\n```"),
        ("[docs](https://example.com/?a=1&b=2)", "<https://example.com/?a=1&b=2|docs>"),
        ("[x](https://e.test/a|b>c)", "<https://e.test/a%7Cb%3Ec|x>"),
        ("[a < b](https://e.test)", "<https://e.test|a &lt; b>"),
        ("<https://e.test>", "<https://e.test>"),
        ("# Title **x**", "*Title x*"),
        ("- one\n- two", "• one\n• two"),
        ("> quote\n> more", "> quote\n> more"),
        ("*a **b** c*", "_a *b* c_"),
        ("a < b & c > d", "a &lt; b &amp; c &gt; d"),
        ("**bold", "**bold"),
    ],
)
def test_slack_constructs(md: str, expected: str) -> None:
    assert to_slack_mrkdwn(md) == expected
    _assert_valid_slack(expected)


# --- Discord and plain text ----------------------------------------------------------

_SAMPLE = """# Plan

Here is **the plan** for *today*, see [the docs](https://docs.test/a_b?x=1&y=2).

- step one uses `pip install -e .`
- step two is ~~skipped~~ done
  1. nested number

> Note: a < b & c > d

```python
def main() -> None:
    print("**not bold**")
```

Done."""


def test_discord_passes_markdown_through() -> None:
    assert to_discord(_SAMPLE) == _SAMPLE
    assert to_discord("**bol") == "**bol"


def test_plain_text_removes_markers() -> None:
    assert to_plain_text(_SAMPLE) == (
        "Plan\n\n"
        "Here is the plan for today, see the docs (https://docs.test/a_b?x=1&y=2).\n\n"
        "• step one uses pip install -e .\n"
        "• step two is skipped done\n"
        "  1. nested number\n\n"
        "> Note: a < b & c > d\n\n"
        "def main() -> None:\n"
        '    print("**not bold**")\n\n'
        "Done."
    )
    assert to_plain_text("<https://e.test>") == "https://e.test"


# --- properties ----------------------------------------------------------------------

_PIECES = [
    "*", "**", "***", "_", "__", "~~", "~", "`", "``", "```", "```py\n", "[", "]", "(", ")",
    "](", "](https://x.test/a_(b)", "<", ">", "&", '"', "\\", "# ", "- ", "1. ", "> ", "\n",
    "\n\n", " ", " ", "a", "bc", "https://x.test/a_b", "<https://x.test>", "|", "&amp;",
]  # fmt: skip


def _random_markdown(rng: random.Random) -> str:
    return "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 60)))


@pytest.mark.parametrize("seed", range(400))
def test_random_markdown_gives_valid_markup(seed: int) -> None:
    md = _random_markdown(random.Random(seed))
    _assert_valid_telegram(to_telegram_html(md))
    _assert_valid_slack(to_slack_mrkdwn(md))
    assert isinstance(to_plain_text(md), str)


@pytest.mark.parametrize("seed", range(100))
def test_conversion_never_lengthens_the_visible_text(seed: int) -> None:
    # The renderer splits markdown at the platform limit and converts each chunk, so a
    # converted chunk must not show more characters than its markdown had.
    md = _random_markdown(random.Random(seed))
    assert len(parse_html(to_telegram_html(md))[0]) <= len(md)
    # Plain text writes a quote as "> " even where the markdown had ">" alone.
    assert len(to_plain_text(md)) <= len(re.sub(r"(?m)^>(?! )", "> ", md))


_PLAIN_PIECES = [
    "a", "Zé", "日本", "7", " ", "  ", ".", ",", "?", "'", '"', "(", ")", "-", "+", "=",
    "/", ":", "%", "$", "@", "^", "{", "}", "1. ", "- ", "x.test", "\u00a0", "\t", "\n",
    "*", "_", "`", "[", "]", "<", ">", "!", "&", "#", "~", "|", "\\", "\x00",
]  # fmt: skip


def test_plain_text_shortcut_renders_as_the_parse_does() -> None:
    # Text with nothing markdown acts on skips the parse: for any text the result must
    # be the full conversion's, including texts one character away from plain.
    rng = random.Random(11)
    unchanged = 0
    for _ in range(3000):
        md = rng.choice("aZé") + "".join(
            rng.choice(_PLAIN_PIECES) for _ in range(rng.randint(0, 12))
        )
        html_text = to_telegram_html(md)
        assert html_text == convert(md, TelegramRenderer()), repr(md)
        unchanged += html_text == md
    assert unchanged > 300  # the shortcut's kind of text was well represented


def test_every_streaming_prefix_gives_valid_markup() -> None:
    for end in range(len(_SAMPLE) + 1):
        partial = _SAMPLE[:end]
        _assert_valid_telegram(to_telegram_html(partial))
        _assert_valid_slack(to_slack_mrkdwn(partial))


@pytest.mark.parametrize("seed", range(50))
def test_text_without_markup_survives_escaping(seed: int) -> None:
    rng = random.Random(seed)
    # A leading letter keeps ">" from starting a quote.
    text = "x" + "".join(rng.choice("ab <>&\"'é;") for _ in range(rng.randint(1, 80)))
    text = text.rstrip()  # markdown drops a paragraph's trailing spaces
    assert _visible(to_telegram_html(text)) == text
    assert html.unescape(to_slack_mrkdwn(text)) == text
    assert to_plain_text(text) == text


def test_deep_nesting_stays_shallow() -> None:
    md = "*a **b " * 200 + "c** d*" * 200
    _assert_valid_telegram(to_telegram_html(md))
    assert to_telegram_html("[" * 5000).count("[") == 5000


# --- readable structure on every platform (headings, lists, quotes, tables) ------------

_STRUCTURE = """## Results

| name | score |
|------|------:|
| **ann** | 10 |
| bob & co | 7 |

> quoted *line*
> > nested

1. first
   - sub a
2. second"""

_GRID = "name     | score\n---------+------\nann      | 10\nbob & co | 7"


def test_structure_for_telegram() -> None:
    html_grid = _GRID.replace("&", "&amp;")
    assert to_telegram_html(_STRUCTURE) == (
        f"<b>Results</b>\n\n<pre>{html_grid}</pre>\n\n"
        "<blockquote>quoted <i>line</i>\nnested</blockquote>\n\n"
        "1. first\n  • sub a\n2. second"
    )
    _assert_valid_telegram(to_telegram_html(_STRUCTURE))


def test_structure_for_slack() -> None:
    assert to_slack_mrkdwn(_STRUCTURE) == (
        f"*Results*\n\n```\n{_GRID.replace('&', '&amp;')}\n```\n\n"
        "> quoted _line_\n> nested\n\n"
        "1. first\n  • sub a\n2. second"
    )


def test_structure_for_discord_keeps_markdown_but_draws_tables() -> None:
    rendered = to_discord(_STRUCTURE)
    table = "\n".join(_STRUCTURE.split("\n")[2:6])
    assert rendered == _STRUCTURE.replace(table, f"```\n{_GRID}\n```")
    assert "|---" not in rendered


def test_structure_as_plain_text() -> None:
    assert to_plain_text(_STRUCTURE) == (
        f"Results\n\n{_GRID}\n\n> quoted line\n> nested\n\n1. first\n  • sub a\n2. second"
    )


def test_a_list_item_opening_with_a_quote_starts_it_on_its_own_line() -> None:
    # Slack shows a quote only at the start of a line.
    assert to_slack_mrkdwn("- > said") == "•\n> said"
    _assert_valid_slack(to_slack_mrkdwn("1. > a < b"))


def test_tables_in_a_streaming_prefix_stay_valid() -> None:
    for end in range(len(_STRUCTURE) + 1):
        _assert_valid_telegram(to_telegram_html(_STRUCTURE[:end]))
        _assert_valid_slack(to_slack_mrkdwn(_STRUCTURE[:end]))
