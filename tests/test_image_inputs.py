"""Content digests of images: which files count, and what changes the tag."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps.errors import StepError
from steps.image_inputs import context_copies, ignored, input_digest, load_ignore
from steps.registry import parse_reference

DOCKERFILE = """\
ARG BASE=python:3.11-slim
FROM ${BASE} AS build
COPY --chown=1000:1000 app/*.py \\
     /app/
COPY ["data", "/data"]
COPY --from=build /x /y
RUN echo not a copy
"""


def _context(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print(1)\n")
    (tmp_path / "app" / "notes.txt").write_text("not copied\n")
    (tmp_path / "data" / "cache").mkdir(parents=True)
    (tmp_path / "data" / "rows.jsonl").write_text("{}\n")
    (tmp_path / "data" / "cache" / "junk.bin").write_text("x")
    (tmp_path / ".dockerignore").write_text("**/cache\n*.md\n")
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    return tmp_path


def test_copies_read_from_the_context_only() -> None:
    copies = context_copies(DOCKERFILE)
    assert [c.sources for c in copies] == [("app/*.py",), ("data",)]
    assert copies[0].line == 3


def test_dockerignore_rules_and_exceptions(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("docs\n**/*.pyc\n!docs/keep.md\n")
    rules = load_ignore(tmp_path)
    assert ignored("docs/a.md", rules)
    assert not ignored("docs/keep.md", rules)
    assert ignored("pkg/sub/x.pyc", rules)
    assert not ignored("pkg/sub/x.py", rules)


def test_the_digest_follows_copied_files_only(tmp_path: Path) -> None:
    context = _context(tmp_path)
    digest, files = input_digest(context, "Dockerfile", {"BASE": "sha256:1"})
    assert files == ["app/main.py", "data/rows.jsonl"]
    (context / "app" / "notes.txt").write_text("changed, but not copied\n")
    (context / "data" / "cache" / "junk.bin").write_text("ignored by .dockerignore")
    assert input_digest(context, "Dockerfile", {"BASE": "sha256:1"})[0] == digest
    assert input_digest(context, "Dockerfile", {"BASE": "sha256:2"})[0] != digest
    (context / "app" / "main.py").write_text("print(2)\n")
    assert input_digest(context, "Dockerfile", {"BASE": "sha256:1"})[0] != digest


def test_a_copy_that_matches_nothing_is_an_error(tmp_path: Path) -> None:
    context = _context(tmp_path)
    (context / "Dockerfile").write_text("FROM x\nCOPY missing/ /m/\n")
    with pytest.raises(StepError, match="'missing/' matches no file"):
        input_digest(context, "Dockerfile", {})


def test_references_get_docker_hub_defaults() -> None:
    ref = parse_reference("python:3.11-slim")
    assert (ref.registry, ref.repository, ref.tag) == ("docker.io", "library/python", "3.11-slim")
    local = parse_reference("127.0.0.1:5000/llmflow/steps:abc")
    assert (local.registry, local.repository, local.tag) == (
        "127.0.0.1:5000",
        "llmflow/steps",
        "abc",
    )
    with pytest.raises(StepError, match="not a sha256 digest"):
        parse_reference("x/y@md5:00")
