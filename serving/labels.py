"""The label scheme of served models, shared by every serving factory and by the code that reads it.

One model has two tracks, each its own Deployment and Service: `stable` (what users get) and
`canary` (the version being judged). Pods also carry the version they serve, so metrics and
`kubectl get pods -L version` tell versions apart. Selectors never include the version: a
Deployment's selector is immutable, and promotion changes the version of the stable track.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workflows.spec import ReleaseSpec, ServingSpec

#: Label naming the track of a pod, Deployment or Service: "stable" or "canary".
TRACK_LABEL = "track"

#: Label naming the version a pod serves (a release's version, or an Argo expression for it).
VERSION_LABEL = "version"

#: The tracks a model is served on.
STABLE = "stable"
CANARY = "canary"
TRACKS = (STABLE, CANARY)

#: Label naming the model; Services carry it, so one ServiceMonitor selects both tracks.
NAME_LABEL = "app.kubernetes.io/name"

#: Labels every llmflow object carries, so `kubectl get -l` finds them (as training jobs do).
PART_OF_LABEL = "app.kubernetes.io/part-of"
MODEL_LABEL = "llmflow.io/model"


def check_track(track: str) -> str:
    """The track, checked to be one of `TRACKS`.

    Raises:
        ValueError: the track is neither "stable" nor "canary".
    """
    if track not in TRACKS:
        raise ValueError(f"unknown track {track!r}: use one of {', '.join(TRACKS)}")
    return track


def object_name(spec: ReleaseSpec, track: str) -> str:
    """Name of a track's Deployment and Service: `<model>-<track>`, e.g. `tiny-llama-canary`.

    Raises:
        ValueError: the track is neither "stable" nor "canary".
    """
    return f"{spec.model.name}-{check_track(track)}"


def route_name(spec: ReleaseSpec) -> str:
    """Name of the model's HTTPRoute: the model's name (one route, both tracks behind it)."""
    return spec.model.name


def served_name(spec: ReleaseSpec) -> str:
    """The model name clients ask vLLM for: `serving.served_name`, else the model's name."""
    if spec.serving is not None and spec.serving.served_name:
        return spec.serving.served_name
    return spec.model.name


def selector(spec: ReleaseSpec, track: str) -> dict[str, str]:
    """Labels that select a track's pods: model name and track, never the version.

    Raises:
        ValueError: the track is neither "stable" nor "canary".
    """
    return {NAME_LABEL: spec.model.name, TRACK_LABEL: check_track(track)}


def model_labels(spec: ReleaseSpec) -> dict[str, str]:
    """Labels of every serving object of the model, whatever its track (e.g. the HTTPRoute)."""
    return {NAME_LABEL: spec.model.name, PART_OF_LABEL: "llmflow", MODEL_LABEL: spec.model.name}


def common_labels(spec: ReleaseSpec, track: str) -> dict[str, str]:
    """Labels of a track's objects (Service, PodDisruptionBudget, ...): no version.

    Raises:
        ValueError: the track is neither "stable" nor "canary".
    """
    return {**model_labels(spec), **selector(spec, track)}


def pod_labels(spec: ReleaseSpec, track: str, version: str) -> dict[str, str]:
    """Labels of a track's pods (and of its Deployment): the selector, the version, ownership.

    Args:
        spec: The release spec.
        track: "stable" or "canary".
        version: The version served; a label value (at most 63 letters, digits, `-_.`), or an
            Argo expression such as `{{inputs.parameters.version}}` that becomes one.

    Raises:
        ValueError: the track is neither "stable" nor "canary".
    """
    return {**common_labels(spec, track), VERSION_LABEL: version}


def serving_of(spec: ReleaseSpec) -> ServingSpec:
    """The spec's `serving` section, which every serving factory needs.

    Raises:
        ValueError: the spec has none, naming the model and the fix.
    """
    if spec.serving is None:
        raise ValueError(
            f"release spec of {spec.model.name!r} has no serving section: add `serving:` with "
            "at least `model: s3://...` (see releases/tiny.yaml)"
        )
    return spec.serving
