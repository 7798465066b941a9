"""What goes into an image, and its content digest.

The inputs: the Dockerfile, its build arguments and every file of the build context its COPY
and ADD instructions take.

A tag made from this digest changes exactly when the image's inputs change, so a registry
that already holds the tag already holds the image, and the build can be skipped. The files
are the ones the builder would send: `.dockerignore` applies as Docker applies it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from steps.errors import StepError

#: Bump to invalidate every content tag (a change to how inputs are digested).
DIGEST_VERSION = "1"


@dataclass(frozen=True)
class IgnoreRule:
    """One line of `.dockerignore`: a cleaned pattern, and whether it re-includes (`!`)."""

    pattern: re.Pattern[str]
    include: bool


def _translate(pattern: str) -> re.Pattern[str]:
    """A Go `filepath.Match` pattern with Docker's `**` (any number of folders) as a regex."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):  # `**/` also matches no folder at all
                out = out[:-2] + "(?:.*/)?"
                i += 1
            continue
        char = pattern[i]
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.find("]", i)
            if end < 0:
                out += re.escape(char)
            else:
                out += fnmatch.translate(pattern[i : end + 1])[4:-3]
                i = end
        else:
            out += re.escape(char)
        i += 1
    return re.compile(out + r"\Z")


def load_ignore(context: Path) -> list[IgnoreRule]:
    """The rules of `<context>/.dockerignore` (none when absent)."""
    path = context / ".dockerignore"
    if not path.is_file():
        return []
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = posixpath.normpath(line[1:].strip() if include else line).lstrip("/")
        rules.append(IgnoreRule(_translate(pattern), include))
    return rules


def ignored(relpath: str, rules: list[IgnoreRule]) -> bool:
    """Whether Docker leaves this context path out: the last rule matching it or a parent wins."""
    parts = relpath.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for rule in rules:
        if any(rule.pattern.match(c) for c in candidates):
            result = not rule.include
    return result


@dataclass(frozen=True)
class Copy:
    """The context sources of one COPY/ADD instruction (line number for messages)."""

    line: int
    sources: tuple[str, ...]


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Instructions with their continuation lines joined, comments dropped."""
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        yield start, buffer + stripped
        buffer = ""
    if buffer:
        yield start, buffer


def context_copies(dockerfile: str) -> list[Copy]:
    """The COPY and ADD instructions that read the build context (not `--from` a stage)."""
    copies = []
    for line, instruction in _logical_lines(dockerfile):
        keyword, _, rest = instruction.partition(" ")
        if keyword.upper() not in {"COPY", "ADD"}:
            continue
        rest = rest.strip()
        words: list[str]
        flags = []
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.strip()
        if any(f.startswith("--from") for f in flags):
            continue
        if rest.startswith("["):
            words = json.loads(rest)
        else:
            words = shlex.split(rest)
        if len(words) < 2:
            raise StepError(f"Dockerfile line {line}: {keyword} needs a source and a destination")
        sources = tuple(words[:-1])
        for source in sources:
            if "$" in source:
                raise StepError(
                    f"Dockerfile line {line}: {keyword} source {source!r} uses a variable; the "
                    "content digest must know the files before the build: name them literally"
                )
            if re.match(r"^[a-z]+://", source):
                raise StepError(
                    f"Dockerfile line {line}: {keyword} {source!r} downloads at build time, "
                    "which a content tag cannot see; download it in a RUN with a checksum"
                )
        copies.append(Copy(line, sources))
    return copies


def _files_of(context: Path, source: str, rules: list[IgnoreRule], where: str) -> list[str]:
    """Context-relative paths of the files a COPY source names, after `.dockerignore`."""
    pattern = posixpath.normpath(source).lstrip("/")
    if pattern in {".", ""}:
        roots = [context]
    else:
        roots = sorted(context.glob(pattern)) if any(c in pattern for c in "*?[") else []
        if not roots and (context / pattern).exists():
            roots = [context / pattern]
    files = []
    for root in roots:
        if root.is_dir() and not root.is_symlink():
            for folder, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for name in sorted(filenames):
                    files.append(Path(folder, name).relative_to(context).as_posix())
        else:
            files.append(root.relative_to(context).as_posix())
    kept = [f for f in files if not ignored(f, rules)]
    if not kept:
        raise StepError(
            f"{where}: COPY source {source!r} matches no file of the build context "
            f"{context} (after .dockerignore); fix the path or the ignore rules"
        )
    return kept


def input_files(context: Path, dockerfile: str, where: str) -> list[str]:
    """Every context file the Dockerfile copies, sorted, each once."""
    rules = load_ignore(context)
    files: set[str] = set()
    for copy in context_copies(dockerfile):
        for source in copy.sources:
            files.update(_files_of(context, source, rules, f"{where} line {copy.line}"))
    return sorted(files)


def input_digest(
    context: Path, dockerfile_path: str, build_args: Mapping[str, str]
) -> tuple[str, list[str]]:
    """The sha256 (hex) of an image's inputs, and the context files that went into it.

    The inputs: the Dockerfile's bytes, the build arguments (the base image resolved to a
    digest among them), and for each copied file its path, whether it is executable and its
    bytes (a symlink: its target). Nothing else of the context counts.
    """
    path = context / dockerfile_path
    if not path.is_file():
        raise StepError(f"Dockerfile {dockerfile_path!r} not found in the build context {context}")
    text = path.read_text()
    files = input_files(context, text, dockerfile_path)
    digest = hashlib.sha256()

    def field(*parts: str | bytes) -> None:
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            digest.update(len(data).to_bytes(8, "big") + data)

    field("llmflow-image-inputs", DIGEST_VERSION, dockerfile_path, text)
    for key in sorted(build_args):
        field("arg", key, build_args[key])
    for rel in files:
        file = context / rel
        if file.is_symlink():
            field("link", rel, os.readlink(file))
            continue
        content = hashlib.sha256(file.read_bytes()).hexdigest()
        field("file", rel, "x" if os.access(file, os.X_OK) else "-", content)
    return digest.hexdigest(), files


def content_tag(digest: str) -> str:
    """The image tag for an input digest: short enough to read, long enough never to collide."""
    return digest[:24]
