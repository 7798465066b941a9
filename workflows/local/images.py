"""Image entrypoints for local runs: what a container with no `command` runs.

On a cluster a container that gives no `command` runs its image's ENTRYPOINT, which a local
run cannot read without pulling the image. An image map names it instead: a YAML mapping of
image reference to entrypoint command list, e.g.

    argoproj/argosay:v2: ["/opt/argosay"]

given with `llmflow run --image-map MAP.yaml`, or read from `.llmflow/images.yaml` when it
exists. The mapped command runs with the container's `args` after it, as the image would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from workflows.exceptions import LLMFlowError

ImageMap = dict[str, list[str]]

#: The map read when `--image-map` is not given, relative to the llmflow folder.
DEFAULT_NAME = "images.yaml"


def load_image_map(path: Path | None, root: Path) -> ImageMap:
    """The image map from `path`, else `<root>/images.yaml` if present, else empty.

    Raises:
        LLMFlowError: the file is unreadable or not a mapping of image to a list of strings.
    """
    if path is None:
        path = root / DEFAULT_NAME
        if not path.is_file():
            return {}
    try:
        data: Any = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise LLMFlowError(f"image map {path}: cannot read it: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LLMFlowError(
            f"image map {path}: expected a mapping of image to command list, e.g. "
            '`argoproj/argosay:v2: ["/opt/argosay"]`'
        )
    out: ImageMap = {}
    for image, command in data.items():
        if (
            not isinstance(command, list)
            or not command
            or not all(isinstance(c, str) for c in command)
        ):
            raise LLMFlowError(
                f"image map {path}: {image}: {command!r} is not a non-empty list of strings; "
                f'write `{image}: ["/path/to/entrypoint"]`'
            )
        out[str(image)] = list(command)
    return out


def entrypoint(images: ImageMap, image: str) -> list[str] | None:
    """The mapped entrypoint of an image (an untagged reference also matches `:latest`)."""
    if image in images:
        return images[image]
    if ":" not in image.rsplit("/", 1)[-1]:
        return images.get(f"{image}:latest")
    return None
