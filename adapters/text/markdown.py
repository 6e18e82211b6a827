"""Parse the markdown LLMs write (CommonMark + strikethrough + tables, by markdown-it-py)
and walk the tree with a small per-platform ``Renderer``.

A renderer only maps nodes to its platform's syntax and escapes each piece of text once,
so its output is well-formed whatever the input: the streaming renderer converts a
partial reply on every edit, and markdown-it leaves half-written markup (``**bol``) as
literal text. The author's blank lines are kept (from the source line map), because chat
platforms show line breaks as written rather than reflowing paragraphs.
"""

from __future__ import annotations

from typing import Literal, Protocol

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markdown_it.tree import SyntaxTreeNode

__all__ = [
    "BareRenderer",
    "Kind",
    "Renderer",
    "convert",
    "format_table",
    "parse",
    "tables_as_grids",
]

Kind = Literal["bold", "italic", "strike"]

RULE = "———"
_STYLES: dict[str, Kind] = {"strong": "bold", "em": "italic", "s": "strike"}
_LIST_INDENT = "  "
_MAX_DEPTH = 8  # deeper inline nesting is unwrapped


class _Parser(MarkdownIt):
    """Every scheme is parsed as a link (each renderer decides which ones its platform
    can show as links), and URLs are kept as written: each renderer escapes them for
    its own syntax."""

    def __init__(self) -> None:
        super().__init__("commonmark", {"html": False})
        self.enable(["strikethrough", "table"])

    def validateLink(self, url: str) -> bool:
        return True

    def normalizeLink(self, url: str) -> str:
        return url

    def normalizeLinkText(self, link: str) -> str:
        return link


_MD = _Parser()


def parse(md: str) -> SyntaxTreeNode:
    tokens = _MD.parse(md)
    for token in tokens:
        if token.children:
            token.children = _shallow(token.children)
    return SyntaxTreeNode(tokens)


def _shallow(tokens: list[Token]) -> list[Token]:
    """Inline tokens with styles nested deeper than ``_MAX_DEPTH`` unwrapped, keeping
    the tree walk's recursion shallow whatever the input."""
    kept: list[Token] = []
    opened: list[bool] = []  # per open style: was it kept?
    for token in tokens:
        if token.nesting == 1:
            opened.append(len([k for k in opened if k]) < _MAX_DEPTH)
            keep = opened[-1]
        elif token.nesting == -1:
            keep = opened.pop() if opened else True
        else:
            keep = True
        if keep:
            kept.append(token)
    return kept


class Renderer(Protocol):
    def text(self, text: str) -> str: ...
    def code(self, text: str) -> str: ...
    def styled(self, kind: Kind, inner: str) -> str: ...
    def link(self, label: str, url: str, *, bare: bool) -> str: ...
    def code_block(self, info: str, code: str) -> str: ...
    def heading(self, inner: str) -> str: ...
    def quote(self, inner: str) -> str: ...
    def table(self, grid: str) -> str: ...


def convert(md: str, out: Renderer) -> str:
    """``md`` rendered for one platform by ``out``."""
    return _Walker(md.split("\n"), out).blocks(parse(md).children, depth=0)


def tables_as_grids(md: str) -> str:
    """``md`` as written, each top-level table drawn as an aligned grid in a code block:
    for platforms that render markdown themselves, but not its tables."""
    if "|" not in md:
        return md  # no table possible: skip the parse
    lines = md.split("\n")
    # From the last table up, so earlier line numbers stay valid.
    for node in reversed(parse(md).children):
        if node.type == "table" and node.map is not None:
            start, end = node.map
            grid = convert("\n".join(lines[start:end]), BareRenderer())
            lines[start:end] = ["```", *grid.split("\n"), "```"]
    return "\n".join(lines)


def format_table(rows: list[list[str]]) -> str:
    """Cells aligned in columns with a rule under the header: readable in monospace on
    every platform, none of which renders markdown tables in messages."""
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    sizes = [max(len(row[i]) for row in rows) for i in range(width)]
    lines = [
        " | ".join(cell.ljust(size) for cell, size in zip(row, sizes, strict=True)) for row in rows
    ]
    lines.insert(1, "-+-".join("-" * size for size in sizes))
    return "\n".join(line.rstrip() for line in lines)


class BareRenderer:
    """Text without any markup: table cells, link labels compared with their URL, and
    the base of the plain-text renderer."""

    def text(self, text: str) -> str:
        return text

    def code(self, text: str) -> str:
        return text

    def styled(self, kind: Kind, inner: str) -> str:
        return inner

    def link(self, label: str, url: str, *, bare: bool) -> str:
        return label

    def code_block(self, info: str, code: str) -> str:
        return code

    def heading(self, inner: str) -> str:
        return inner

    def quote(self, inner: str) -> str:
        return inner

    def table(self, grid: str) -> str:
        return grid


class _Walker:
    def __init__(self, lines: list[str], out: Renderer) -> None:
        self.lines = lines
        self.out = out
        self.quoted = False

    def blocks(self, nodes: list[SyntaxTreeNode], *, depth: int) -> str:
        parts: list[str] = []
        previous: SyntaxTreeNode | None = None
        for node in nodes:
            if previous is not None:
                parts.append("\n\n" if self._blank_between(previous, node) else "\n")
            parts.append(self.block(node, depth=depth))
            previous = node
        return "".join(parts)

    def _blank_between(self, previous: SyntaxTreeNode, node: SyntaxTreeNode) -> bool:
        if previous.map is None or node.map is None:
            return False
        end = previous.map[1]
        while end > previous.map[0] and _is_blank(self.lines[end - 1]):
            end -= 1  # a loose list item's map includes the blank line after it
        return any(_is_blank(line) for line in self.lines[end : node.map[0]])

    def block(self, node: SyntaxTreeNode, *, depth: int) -> str:
        out = self.out
        match node.type:
            case "paragraph":
                return self.inline(node.children[0])
            case "heading":
                inner = self.inline(node.children[0], active=frozenset({"bold"}))
                return out.heading(inner) if inner else ""
            case "blockquote":
                return self.quote(node, depth=depth)
            case "fence" | "code_block":
                return out.code_block(node.info, node.content.removesuffix("\n"))
            case "hr":
                return out.text(RULE)
            case "bullet_list" | "ordered_list":
                return "\n".join(self.item(item, depth=depth) for item in node.children)
            case "table":
                return out.table(format_table(self.table_rows(node)))
            case _:  # nothing else is enabled; keep whatever text it holds
                return out.text(node.content)

    def quote(self, node: SyntaxTreeNode, *, depth: int) -> str:
        if self.quoted:  # flattened: neither Telegram nor Slack can nest quotes
            return self.blocks(node.children, depth=depth)
        self.quoted = True
        try:
            return self.out.quote(self.blocks(node.children, depth=depth))
        finally:
            self.quoted = False

    def item(self, item: SyntaxTreeNode, *, depth: int) -> str:
        marker = "• " if item.markup in "-*+" else f"{item.info}{item.markup} "
        prefix = self.out.text(_LIST_INDENT * depth + marker)
        body = self.blocks(item.children, depth=depth + 1)
        if item.children and item.children[0].type == "blockquote" and not self.quoted:
            return prefix.rstrip() + "\n" + body  # Slack quotes only at a line's start
        return prefix + body

    def table_rows(self, table: SyntaxTreeNode) -> list[list[str]]:
        rows = [row for section in table.children for row in section.children]
        plain = _Walker(self.lines, BareRenderer())
        return [
            [plain.inline(cell.children[0]) if cell.children else "" for cell in row.children]
            for row in rows
        ]

    def inline(self, node: SyntaxTreeNode, active: frozenset[str] = frozenset()) -> str:
        return "".join(self._span(child, active) for child in node.children)

    def _span(self, node: SyntaxTreeNode, active: frozenset[str]) -> str:
        out = self.out
        match node.type:
            case "text":
                return out.text(node.content)
            case "softbreak" | "hardbreak":
                return out.text("\n")
            case "code_inline":
                return out.code(node.content)
            case "strong" | "em" | "s":
                kind = _STYLES[node.type]
                if kind in active:  # nested in itself: Telegram refuses <b><b>
                    return self.inline(node, active)
                return out.styled(kind, self.inline(node, active | {kind}))
            case "link" if "link" in active:  # an autolink in a link's label stays text
                auto = node.markup == "autolink"
                return out.text(f"<{self.plain(node)}>") if auto else self.inline(node, active)
            case "link":
                url = str(node.attrs.get("href", ""))
                label = self.inline(node, active | {"link"})
                bare = self.plain(node) == url
                return out.link(label, url, bare=bare)
            case "image":
                url = str(node.attrs.get("src", ""))
                alt = self.plain(node) or url
                return out.link(out.text(alt), url, bare=alt == url)
            case _:
                return out.text(node.content)

    def plain(self, node: SyntaxTreeNode) -> str:
        return _Walker(self.lines, BareRenderer()).inline(node)


def _is_blank(line: str) -> bool:
    # Inside a block quote a blank line still carries its ">" marks.
    return not line.strip(" \t>")
