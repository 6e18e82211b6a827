"""Convert the markdown LLMs write into what each platform renders.

One parser, several renderers. `_parse_blocks` splits the text into blocks (fenced code,
headings, quotes, list items, paragraphs); `_parse_inline` lexes a block's text into text,
code, links and delimiter tokens, then matches the delimiters on a stack, so unbalanced
or half-streamed markup (``**bol``) stays literal text. A renderer only maps nodes to its
platform's syntax and escapes each piece of text once, so its output is well-formed
whatever the input: the streaming renderer converts a partial reply on every edit.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Literal, Protocol, assert_never

from gateway.chunking import Fence, parse_fence_open

__all__ = ["to_discord", "to_plain_text", "to_slack_mrkdwn", "to_telegram_html"]

Kind = Literal["bold", "italic", "strike"]

_KINDS: dict[str, Kind] = {"**": "bold", "__": "bold", "*": "italic", "_": "italic", "~~": "strike"}
_MAX_DEPTH = 8  # deeper nesting stays literal, keeping rendering recursion shallow
_TELEGRAM_SCHEMES = ("http://", "https://", "mailto:", "tg://")  # Telegram rejects others
_SLACK_SCHEMES = ("http://", "https://", "mailto:")
_TELEGRAM_TAGS: dict[Kind, str] = {"bold": "b", "italic": "i", "strike": "s"}
_SLACK_MARKS: dict[Kind, str] = {"bold": "*", "italic": "_", "strike": "~"}
_RULE = "———"


@dataclass(frozen=True, kw_only=True, slots=True)
class _Text:
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class _Code:
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class _Styled:
    kind: Kind
    children: tuple[_Node, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class _Link:
    url: str
    children: tuple[_Node, ...]


_Node = _Text | _Code | _Styled | _Link


@dataclass(frozen=True, kw_only=True, slots=True)
class _Delim:
    marker: str
    can_open: bool
    can_close: bool


_Token = _Node | _Delim


# --- inline lexing -------------------------------------------------------------------

_SPECIAL = re.compile(r"[\\`\[<*_~]|https?://")
_AUTOLINK = re.compile(r"<((?:https?://|mailto:)[^\s<>]+)>")
_BARE_URL = re.compile(r"https?://[^\s<>]+")
_URL_TRAILING = ".,:;!?'\"*_~"


def _is_punct(char: str) -> bool:
    return not char.isalnum() and not char.isspace()


def _pairs(text: str, opening: str, closing: str) -> dict[int, int]:
    """Matching bracket positions, found in one pass so that many unclosed "[" cost
    nothing (the streaming renderer converts every partial reply)."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for match in re.finditer(re.escape(opening) + "|" + re.escape(closing), text):
        pos = match.start()
        if pos > 0 and text[pos - 1] == "\\":
            continue
        if match[0] == opening:
            stack.append(pos)
        elif stack:
            pairs[stack.pop()] = pos
    return pairs


class _Lexer:
    def __init__(self, text: str, *, in_link: bool) -> None:
        self.text = text
        self.in_link = in_link
        self.brackets = {} if in_link or "[" not in text else _pairs(text, "[", "]")
        self.parens = {} if not self.brackets else _pairs(text, "(", ")")

    def run(self) -> list[_Token]:
        text, pos = self.text, 0
        tokens: list[_Token] = []
        while pos < len(text):
            match = _SPECIAL.search(text, pos)
            start = len(text) if match is None else match.start()
            if start > pos:
                tokens.append(_Text(text=text[pos:start]))
            if match is None:
                break
            new_tokens, pos = self._special(start)
            tokens.extend(new_tokens)
        return tokens

    def _special(self, pos: int) -> tuple[list[_Token], int]:
        text, char = self.text, self.text[pos]
        if char == "\\":
            if pos + 1 < len(text) and text[pos + 1].isascii() and _is_punct(text[pos + 1]):
                return [_Text(text=text[pos + 1])], pos + 2
            return [_Text(text="\\")], pos + 1
        if char == "`":
            return _lex_code(text, pos)
        if char == "[" and (link := self._link(pos)) is not None:
            return [link[0]], link[1]
        if char == "<" and not self.in_link and (autolink := _AUTOLINK.match(text, pos)):
            url = autolink[1]
            return [_Link(url=url, children=(_Text(text=url),))], autolink.end()
        if char == "h":
            return _lex_bare_url(text, pos)
        if char in "*_~":
            return _lex_delims(text, pos)
        return [_Text(text=char)], pos + 1

    def _link(self, pos: int) -> tuple[_Link, int] | None:
        label_end = self.brackets.get(pos)
        if label_end is None:
            return None
        dest_end = self.parens.get(label_end + 1)
        if dest_end is None or "\n" in self.text[label_end:dest_end]:
            return None
        parts = self.text[label_end + 2 : dest_end].split()
        if not parts:
            return None
        url = parts[0].removeprefix("<").removesuffix(">")  # the rest is a title
        label = self.text[pos + 1 : label_end]
        children = _parse_inline(label, in_link=True) if label.strip() else [_Text(text=url)]
        return _Link(url=url, children=tuple(children)), dest_end + 1


def _lex_code(text: str, pos: int) -> tuple[list[_Token], int]:
    end = pos
    while end < len(text) and text[end] == "`":
        end += 1
    run = text[pos:end]
    closing = re.compile(rf"(?<!`){run}(?!`)").search(text, end)
    if closing is None:
        return [_Text(text=run)], end
    content = text[end : closing.start()]
    if len(content) > 2 and content[0] == content[-1] == " " and content.strip():
        content = content[1:-1]  # CommonMark: one space each side lets code start with `
    return [_Code(text=content)], closing.end()


def _lex_bare_url(text: str, pos: int) -> tuple[list[_Token], int]:
    # Kept whole so the "_" and "*" inside a URL are never read as emphasis.
    match = _BARE_URL.match(text, pos)
    if match is None or (pos > 0 and text[pos - 1].isalnum()):
        return [_Text(text="h")], pos + 1
    url = match[0].rstrip(_URL_TRAILING)
    while url.endswith(")") and url.count(")") > url.count("("):
        url = url[:-1].rstrip(_URL_TRAILING)
    return [_Text(text=url)], pos + len(url)


def _flanking(char: str, before: str, after: str) -> tuple[bool, bool]:
    """Whether a delimiter run between `before` and `after` can open and can close
    (CommonMark's flanking rules, simplified)."""
    left = not after.isspace() and (not _is_punct(after) or before.isspace() or _is_punct(before))
    right = not before.isspace() and (not _is_punct(before) or after.isspace() or _is_punct(after))
    if char == "_":  # "snake_case_name" is not emphasis
        return left and (not right or _is_punct(before)), right and (not left or _is_punct(after))
    return left, right


def _lex_delims(text: str, pos: int) -> tuple[list[_Token], int]:
    char, end = text[pos], pos
    while end < len(text) and text[end] == char:
        end += 1
    run = text[pos:end]
    if len(run) > 3 or (char == "~" and len(run) != 2):
        return [_Text(text=run)], end
    before = text[pos - 1] if pos > 0 else " "
    after = text[end] if end < len(text) else " "
    can_open, can_close = _flanking(char, before, after)
    markers = [run] if len(run) < 3 else [char, char * 2] if can_close else [char * 2, char]
    return [_Delim(marker=m, can_open=can_open, can_close=can_close) for m in markers], end


# --- delimiter matching --------------------------------------------------------------


@dataclass(slots=True)
class _Frame:
    marker: str
    children: list[_Node] = field(default_factory=list)


def _unwind(frames: list[_Frame]) -> list[_Node]:
    """Unmatched openers become literal text, their content kept in order."""
    nodes: list[_Node] = []
    for frame in frames:
        nodes.append(_Text(text=frame.marker))
        nodes.extend(frame.children)
    return nodes


def _match_delims(tokens: list[_Token]) -> list[_Node]:
    root: list[_Node] = []
    frames: list[_Frame] = []
    for token in tokens:
        top = frames[-1].children if frames else root
        if not isinstance(token, _Delim):
            top.append(token)
            continue
        opener = next(
            (i for i in range(len(frames) - 1, -1, -1) if frames[i].marker == token.marker),
            None,
        )
        if token.can_close and opener is not None:
            children = frames[opener].children + _unwind(frames[opener + 1 :])
            del frames[opener:]
            kind = _KINDS[token.marker]
            (frames[-1].children if frames else root).append(
                _Styled(kind=kind, children=tuple(children))
            )
        elif token.can_open and len(frames) < _MAX_DEPTH:
            frames.append(_Frame(marker=token.marker))
        else:
            top.append(_Text(text=token.marker))
    return root + _unwind(frames)


def _parse_inline(text: str, *, in_link: bool = False) -> list[_Node]:
    return _match_delims(_Lexer(text, in_link=in_link).run())


# --- blocks --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class _CodeBlock:
    info: str
    code: str


@dataclass(frozen=True, kw_only=True, slots=True)
class _Line:
    """A line of inline text: a paragraph line, a heading or a list item."""

    text: str
    prefix: str = ""  # the list item's indentation and bullet or number
    heading: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class _Quote:
    blocks: tuple[_Block, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class _Rule:
    pass


_Block = _CodeBlock | _Line | _Quote | _Rule

_HEADING = re.compile(r" {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*")
_RULE_LINE = re.compile(r" {0,3}([-*_])[ \t]*(?:\1[ \t]*){2,}")
_BULLET = re.compile(r"([ \t]*)[-*+][ \t]+(.*)")
_NUMBERED = re.compile(r"([ \t]*)(\d{1,9}[.)])[ \t]+(.*)")
_QUOTE_MARKS = re.compile(r"(?:[ \t]{0,3}>[ \t]?)+")


def _read_fence(lines: list[str], index: int, fence: Fence) -> tuple[_CodeBlock, int]:
    indent = len(lines[index]) - len(lines[index].lstrip(" "))
    code: list[str] = []
    index += 1
    while index < len(lines) and not fence.is_closed_by(lines[index]):
        line = lines[index]
        code.append(line[min(indent, len(line) - len(line.lstrip(" "))) :])
        index += 1
    return _CodeBlock(info=fence.info, code="\n".join(code)), index + 1


def _read_quote(lines: list[str], index: int) -> tuple[_Quote, int]:
    # Nested quotes are flattened: neither Telegram nor Slack can nest them.
    inner: list[str] = []
    while index < len(lines) and (marks := _QUOTE_MARKS.match(lines[index])) is not None:
        inner.append(lines[index][marks.end() :])
        index += 1
    return _Quote(blocks=tuple(_parse_blocks(inner, quoted=True))), index


def _line_block(line: str) -> _Block:
    if _RULE_LINE.fullmatch(line):
        return _Rule()
    if heading := _HEADING.fullmatch(line):
        return _Line(text=heading[1] or "", heading=True)
    if bullet := _BULLET.fullmatch(line):
        return _Line(text=bullet[2], prefix=f"{bullet[1]}• ")
    if numbered := _NUMBERED.fullmatch(line):
        return _Line(text=numbered[3], prefix=f"{numbered[1]}{numbered[2]} ")
    return _Line(text=line)


def _parse_blocks(lines: list[str], *, quoted: bool = False) -> list[_Block]:
    blocks: list[_Block] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        block: _Block
        if (fence := parse_fence_open(line)) is not None:
            block, index = _read_fence(lines, index, fence)
        elif not quoted and _QUOTE_MARKS.match(line):
            block, index = _read_quote(lines, index)
        else:
            block, index = _line_block(line), index + 1
        previous = blocks[-1] if blocks else None
        if isinstance(previous, _Line) and isinstance(block, _Line) and _joins(previous, block):
            # One paragraph is parsed as a whole: emphasis may span its lines.
            blocks[-1] = _Line(text=f"{previous.text}\n{block.text}")
        else:
            blocks.append(block)
    return blocks


def _joins(previous: _Line, line: _Line) -> bool:
    return all(not x.prefix and not x.heading and x.text.strip() for x in (previous, line))


# --- rendering -----------------------------------------------------------------------


class _Renderer(Protocol):
    def text(self, text: str) -> str: ...
    def code(self, text: str) -> str: ...
    def styled(self, kind: Kind, inner: str) -> str: ...
    def link(self, label: str, url: str, *, bare: bool) -> str: ...
    def code_block(self, info: str, code: str) -> str: ...
    def heading(self, inner: str) -> str: ...
    def quote(self, inner: str) -> str: ...


def _plain_label(nodes: tuple[_Node, ...]) -> str:
    return _render_inline(nodes, _PlainRenderer(), frozenset())


def _render_inline(nodes: tuple[_Node, ...], out: _Renderer, active: frozenset[Kind]) -> str:
    parts: list[str] = []
    for node in nodes:
        match node:
            case _Text(text=text):
                parts.append(out.text(text))
            case _Code(text=text):
                parts.append(out.code(text))
            case _Styled(kind=kind, children=children) if kind in active:
                parts.append(_render_inline(children, out, active))
            case _Styled(kind=kind, children=children):
                parts.append(out.styled(kind, _render_inline(children, out, active | {kind})))
            case _Link(url=url, children=children):
                label = _render_inline(children, out, active)
                parts.append(out.link(label, url, bare=_plain_label(children) == url))
            case _:
                assert_never(node)
    return "".join(parts)


def _render_blocks(blocks: list[_Block] | tuple[_Block, ...], out: _Renderer) -> str:
    rendered: list[str] = []
    for block in blocks:
        match block:
            case _Rule():
                rendered.append(out.text(_RULE))
            case _CodeBlock(info=info, code=code):
                rendered.append(out.code_block(info, code))
            case _Quote(blocks=quoted):
                rendered.append(out.quote(_render_blocks(quoted, out)))
            case _Line(text=text, heading=True):
                bold: frozenset[Kind] = frozenset({"bold"})
                inner = _render_inline(tuple(_parse_inline(text)), out, bold)
                rendered.append(out.heading(inner) if inner else "")
            case _Line(text=text, prefix=prefix):
                nodes = tuple(_parse_inline(text))
                rendered.append(out.text(prefix) + _render_inline(nodes, out, frozenset()))
            case _:
                assert_never(block)
    return "\n".join(rendered)


def _convert(md: str, out: _Renderer) -> str:
    return _render_blocks(_parse_blocks(md.split("\n")), out)


def _escape_html(text: str) -> str:
    return html.escape(text, quote=False)


def _code_language(info: str) -> str | None:
    words = info.split()
    if words and re.fullmatch(r"[\w#+.-]+", words[0]):
        return words[0]
    return None


class _TelegramRenderer:
    def text(self, text: str) -> str:
        return _escape_html(text)

    def code(self, text: str) -> str:
        return f"<code>{_escape_html(text)}</code>"

    def styled(self, kind: Kind, inner: str) -> str:
        tag = _TELEGRAM_TAGS[kind]
        return f"<{tag}>{inner}</{tag}>"

    def link(self, label: str, url: str, *, bare: bool) -> str:
        if not url.startswith(_TELEGRAM_SCHEMES):
            return label if bare else f"{label} ({_escape_html(url)})"
        return f'<a href="{html.escape(url, quote=True)}">{label}</a>'

    def code_block(self, info: str, code: str) -> str:
        language = _code_language(info)
        if language is None:
            return f"<pre>{_escape_html(code)}</pre>"
        return f'<pre><code class="language-{language}">{_escape_html(code)}</code></pre>'

    def heading(self, inner: str) -> str:
        return f"<b>{inner}</b>"

    def quote(self, inner: str) -> str:
        return f"<blockquote>{inner}</blockquote>"


class _SlackRenderer:
    def text(self, text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    def code(self, text: str) -> str:
        return f"`{self.text(text)}`"

    def styled(self, kind: Kind, inner: str) -> str:
        mark = _SLACK_MARKS[kind]
        return f"{mark}{inner}{mark}"

    def link(self, label: str, url: str, *, bare: bool) -> str:
        if not url.startswith(_SLACK_SCHEMES):
            return label if bare else f"{label} ({self.text(url)})"
        # "|" and ">" would end the link's control sequence early.
        target = url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E")
        return f"<{target}>" if bare else f"<{target}|{label}>"

    def code_block(self, info: str, code: str) -> str:
        return f"```\n{self.text(code)}\n```"

    def heading(self, inner: str) -> str:
        return f"*{inner}*"

    def quote(self, inner: str) -> str:
        return "\n".join(f"> {line}" for line in inner.split("\n"))


class _PlainRenderer:
    def text(self, text: str) -> str:
        return text

    def code(self, text: str) -> str:
        return text

    def styled(self, kind: Kind, inner: str) -> str:
        return inner

    def link(self, label: str, url: str, *, bare: bool) -> str:
        return label if bare else f"{label} ({url})"

    def code_block(self, info: str, code: str) -> str:
        return code

    def heading(self, inner: str) -> str:
        return inner

    def quote(self, inner: str) -> str:
        return "\n".join(f"> {line}" for line in inner.split("\n"))


def to_telegram_html(md: str) -> str:
    """Telegram Bot API HTML (parse_mode="HTML"): always balanced, only supported tags."""
    return _convert(md, _TelegramRenderer())


def to_slack_mrkdwn(md: str) -> str:
    """Slack mrkdwn, with &, < and > escaped outside link control sequences."""
    return _convert(md, _SlackRenderer())


def to_discord(md: str) -> str:
    """Discord renders markdown itself, so the text goes through unchanged."""
    return md


def to_plain_text(md: str) -> str:
    """Markers removed, links as "text (url)", code kept verbatim: the fallback when a
    platform rejects the converted markup."""
    return _convert(md, _PlainRenderer())
