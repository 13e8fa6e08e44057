"""Check a report folder before anything privileged reads it, and render what may be posted.

The pull-request report arrives as an artifact of an untrusted run. Before it is posted
(pr-comment.yml) every link and image in `report.md` is checked here: a local target must be
a plain relative path to a regular file inside the folder (no absolute path, `..`, `~`,
percent or entity escapes, symlinks or hard links), an image must be a PNG, a URL must start
with an allowed prefix, raw HTML is limited to a few harmless tags without attributes, and
reference-style definitions are refused. Any problem refuses the whole report.

What is posted is then rebuilt, not passed through: links become their text, images are
dropped (or, when plots are published on purpose, re-emitted by this module for the checked
PNGs only), and a last guard refuses the result if any link syntax is left in it.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mlops_template import PipelineError
from mlops_template.io.storage import SAFE_PATH

REPORT_NAME = "report.md"
MAX_REPORT_BYTES = 1 << 20
MAX_IMAGE_BYTES = 10 << 20
MAX_IMAGES = 20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SAFE_URL_REST = re.compile(r"[A-Za-z0-9_.~/?#=&%+:@,;!*()-]*")
ALLOWED_TAGS = {"details", "summary", "br", "b", "i", "em", "strong", "code", "sub", "sup"}
ALLOWED_TAGS |= {"kbd", "p", "hr", "pre", "table", "thead", "tbody", "tr", "th", "td"}
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{1,31}:")

_LINK_START = re.compile(r"(!?)\[((?:[^\[\]\n]|\[[^\[\]\n]*\])*)\]\(")
_DEFINITION = re.compile(r"^ {0,3}\[[^\]\n]+\]:", re.M)
_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*)>")
_TAG = re.compile(r"<\s*(/?)\s*([A-Za-z][A-Za-z0-9-]*)([^>]*)>")
_BARE_URL = re.compile(r"(?<![\w/])(?:[A-Za-z][A-Za-z0-9+.-]{1,31}://|www\.)[^\s<>()|`]*")
_NOTE = "\0note\0"  # where the caller's note goes (a NUL never survives check_report)
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


class ReportRefusedError(PipelineError):
    """The report breaks a rule: nothing of it may be posted."""


@dataclass(frozen=True)
class Link:
    image: bool
    text: str
    target: str
    start: int  # the whole `![text](target)` span in the markdown
    end: int


@dataclass
class CheckedReport:
    folder: Path
    markdown: str
    links: list[Link] = field(default_factory=list)
    images: dict[str, Path] = field(default_factory=dict)  # target -> checked PNG


def _parse_destination(text: str, start: int) -> tuple[str, int] | None:
    """Parse `target [title])` from `start` (just after the `(`): (target, index after `)`)."""
    i, n = start, len(text)
    while i < n and text[i] in " \t":
        i += 1
    if i < n and text[i] == "<":
        close = text.find(">", i)
        if close < 0 or "\n" in text[i:close]:
            return None
        target, i = text[i + 1 : close], close + 1
    else:
        depth, begin = 0, i
        while i < n and not text[i].isspace():
            if text[i] == "(":
                depth += 1
            elif text[i] == ")":
                if depth == 0:
                    break
                depth -= 1
            i += 1
        target = text[begin:i]
    while i < n and text[i] in " \t":
        i += 1
    if i < n and text[i] in "\"'(":
        quote = ")" if text[i] == "(" else text[i]
        close = text.find(quote, i + 1)
        if close < 0:
            return None
        i = close + 1
        while i < n and text[i] in " \t":
            i += 1
    if i >= n or text[i] != ")":
        return None
    return target, i + 1


def find_links(markdown: str) -> tuple[list[Link], list[str]]:
    """Every inline link and image, and problems for link syntax that could not be parsed."""
    links: list[Link] = []
    problems: list[str] = []
    for match in _LINK_START.finditer(markdown):
        parsed = _parse_destination(markdown, match.end())
        line = markdown.count("\n", 0, match.start()) + 1
        if parsed is None:
            problems.append(f"line {line}: a link that cannot be parsed safely")
            continue
        target, end = parsed
        links.append(Link(match.group(1) == "!", match.group(2), target, match.start(), end))
    found = {link.start + 1 + (1 if link.image else 0) + len(link.text) for link in links}
    for position in (m.start() for m in re.finditer(r"\]\(", markdown)):
        if position not in found:
            line = markdown.count("\n", 0, position) + 1
            problems.append(f"line {line}: `](` outside a link this check understands")
    return links, problems


def _without_code(markdown: str) -> str:
    """The markdown with fenced blocks, indented lines and code spans blanked out (spaces:
    every position stays where it was)."""
    kept: list[str] = []
    fence: str | None = None
    for line in markdown.split("\n"):
        opened = _FENCE.match(line)
        if fence is not None:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = None
            kept.append(" " * len(line))
        elif opened:
            fence = opened.group(1)
            kept.append(" " * len(line))
        elif line.startswith(("    ", "\t")):
            kept.append(" " * len(line))
        else:
            kept.append(line)
    text = "\n".join(kept)
    # Code spans: a run of N backticks up to the next run of exactly N.
    out, i = [], 0
    for match in re.finditer(r"`+", text):
        if match.start() < i:
            continue
        ticks = match.group(0)
        close = re.compile(rf"(?<!`){ticks}(?!`)").search(text, match.end())
        if close is None:
            continue
        out.append(text[i : match.start()])
        out.append(" " * (close.end() - match.start()))
        i = close.end()
    out.append(text[i:])
    return "".join(out)


def _url_allowed(url: str, allowed: Iterable[str]) -> bool:
    for prefix in allowed:
        if prefix.startswith("https://") and url.startswith(prefix):
            return bool(SAFE_URL_REST.fullmatch(url[len(prefix) :]))
    return False


def local_file(folder: Path, target: str) -> tuple[Path | None, str]:
    """(the file, "") if `target` is a plain relative path to a regular file inside `folder`,
    else (None, why)."""
    if not SAFE_PATH.fullmatch(target):
        return None, "not a plain relative path inside the report folder"
    current = folder
    for part in target.split("/"):
        current = current / part
        try:
            info = current.lstat()
        except OSError:
            return None, "no such file in the report folder"
        if stat.S_ISLNK(info.st_mode):
            return None, "a symlink"
    if not stat.S_ISREG(info.st_mode):
        return None, "not a regular file"
    if info.st_nlink > 1:
        return None, "a hard link"
    if not current.resolve().is_relative_to(folder.resolve()):
        return None, "outside the report folder"
    return current, ""


def regular_file(path: Path, what: str) -> None:
    try:
        info = path.lstat()
    except OSError:
        raise ReportRefusedError(f"{what} {path} is missing") from None
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        raise ReportRefusedError(f"{what} {path} is not a regular file (symlink, link or other)")


def check_report(folder: Path, allowed_urls: Iterable[str] = ()) -> CheckedReport:
    """Check `folder/report.md` and what it links; raise ReportRefusedError listing problems."""
    allowed = list(allowed_urls)
    report, markdown = _read_report(folder)
    checked = CheckedReport(folder, markdown)
    problems: list[str] = []
    if "\0" in markdown:
        problems.append("a NUL character")
    links, unparsed = find_links(markdown)
    problems += unparsed
    for link in links:
        where = f"line {markdown.count(chr(10), 0, link.start) + 1}: `{link.target[:80]}`"
        problem = _check_link(checked, link, allowed)
        if problem:
            problems.append(f"{where}: {problem}")
    if len(checked.images) > MAX_IMAGES:
        problems.append(f"more than {MAX_IMAGES} images")
    problems += _prose_problems(markdown, links, allowed)
    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        raise ReportRefusedError(f"{report}: refused, nothing is posted:\n{listed}")
    return checked


def markup_problems(markdown: str) -> list[str]:
    """What check_report or render() would refuse in a text that should hold no link and no
    HTML at all (the model card the PR report folds in): any link or image, a URL, any HTML
    tag (one could close the fold it sits in), link syntax even in code, a reference
    definition, a NUL. Stricter than check_report."""
    links, problems = find_links(markdown)
    problems += [f"a link to `{link.target[:80]}`" for link in links]
    if "\0" in markdown:
        problems.append("a NUL character")
    if _TAG.search(_without_code(markdown)):  # in code, `<NA>` is text
        problems.append("an HTML tag")
    if _link_syntax(markdown):
        problems.append("link syntax (`](`, `src=`, `href=` or a definition)")
    return problems + _prose_problems(markdown, links, [])


def _read_report(folder: Path) -> tuple[Path, str]:
    """The report's path and text: a regular file in a real folder, small, UTF-8."""
    if folder.is_symlink() or not folder.is_dir():
        raise ReportRefusedError(f"{folder} is not a directory")
    report = folder / REPORT_NAME
    regular_file(report, "the report")
    if report.stat().st_size > MAX_REPORT_BYTES:
        raise ReportRefusedError(f"{report} is over {MAX_REPORT_BYTES} bytes")
    try:
        return report, report.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ReportRefusedError(f"{report} is not UTF-8 text") from None


def _check_link(checked: CheckedReport, link: Link, allowed: list[str]) -> str | None:
    """Why `link` is refused, or None: then it is added to `checked` (an image also to its
    images)."""
    target = link.target
    if target.startswith("#") and not link.image and re.fullmatch(r"#[\w-]*", target):
        checked.links.append(link)
        return None
    if SCHEME.match(target) or target.startswith("//"):
        if link.image:
            return "an image must be a PNG inside the report folder"
        if not _url_allowed(target, allowed):
            return "a URL that is not allowed"
        checked.links.append(link)
        return None
    path, why = local_file(checked.folder, target)
    if path is None:
        return why
    if link.image:
        if path.suffix.lower() != ".png":
            return "an image that is not a .png"
        with path.open("rb") as handle:
            if handle.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
                return "not a PNG file"
        if path.stat().st_size > MAX_IMAGE_BYTES:
            return f"an image over {MAX_IMAGE_BYTES} bytes"
        checked.images[target] = path
    checked.links.append(link)
    return None


def _prose_problems(markdown: str, links: list[Link], allowed: list[str]) -> list[str]:
    """Links outside the inline syntax: reference definitions, autolinks, HTML, bare URLs."""
    problems: list[str] = []
    for match in _DEFINITION.finditer(markdown):
        line = markdown.count("\n", 0, match.start()) + 1
        problems.append(f"line {line}: reference-style link definitions are not allowed")
    prose = _without_code(markdown)
    for match in _AUTOLINK.finditer(prose):
        if not _url_allowed(match.group(1), allowed):
            line = prose.count("\n", 0, match.start()) + 1
            problems.append(f"line {line}: a URL that is not allowed: `{match.group(1)[:80]}`")

    def blank(match: re.Match[str]) -> str:
        return " " * len(match.group(0))

    without_autolinks = _AUTOLINK.sub(blank, prose)
    for match in _TAG.finditer(without_autolinks):
        name, attributes = match.group(2).lower(), match.group(3).strip()
        harmless = attributes in {"", "/"} or (name == "details" and attributes == "open")
        if name not in ALLOWED_TAGS or not harmless:
            line = without_autolinks.count("\n", 0, match.start()) + 1
            problems.append(f"line {line}: HTML `{match.group(0)[:60]}` is not allowed")
    without_links = list(without_autolinks)
    for link in links:
        without_links[link.start : link.end] = " " * (link.end - link.start)
    for match in _BARE_URL.finditer("".join(without_links)):
        url = match.group(0)
        if not _url_allowed(url, allowed):
            problems.append(f"a URL that is not allowed: `{url[:80]}`")
    return problems


def render(checked: CheckedReport, note: str, images: dict[str, str] | None = None) -> str:
    """The markdown to post. Links become their text. Images are dropped and `note` stands
    where the first one was; or, with `images` (checked target -> posted name), each checked
    PNG is re-emitted as `![alt](name)`. Nothing else of the original link syntax survives."""
    markdown, out, last, noted = checked.markdown, [], 0, False
    for link in sorted(checked.links, key=lambda item: item.start):
        out.append(markdown[last : link.start])
        last = link.end
        if not link.image:
            out.append(link.text)
        elif images is not None:
            alt = re.sub(r"[^\w .,:-]", "", link.text)[:100]
            out.append(f"![{alt}]({images[link.target]})")
        elif not noted:
            out.append(_NOTE + "\n")
            noted = True
        if link.image and images is None and markdown[last : last + 1] == "\n":
            last += 1  # the image's line goes with it
    out.append(markdown[last:])
    text = "".join(out)
    emitted = set(images.values()) if images else set()
    leftover = re.sub(
        r"!\[[\w .,:-]*\]\(([\w.-]+)\)", lambda m: "" if m.group(1) in emitted else m.group(0), text
    )
    if _link_syntax(leftover):
        raise ReportRefusedError("the rendered comment still holds link syntax: refused")
    return text.replace(_NOTE, note)


def _link_syntax(text: str) -> bool:
    """Link syntax anywhere, code spans included: render()'s last guard."""
    return bool(
        "](" in text
        or re.search(r"(?i)\b(?:src|href|srcset)\s*=", text)
        or _DEFINITION.search(text)
    )
