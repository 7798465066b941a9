"""The release record store: immutable records, and aliases moved so that one release wins.

Layout below the store's URI (`s3://bucket/prefix` or `file:///path`):

    <model>/records/<release>.json    one per release, written once, never replaced
    <model>/aliases/production.json   {release, previous, generation, moved_at, action}

`previous` is a field of production's document, not an object of its own. Both names move
in one conditional write, so there is no moment, and no crash between two writes, at which
they disagree; and of two writers that read the same version, exactly one succeeds, for
both names at once. `alias(model, "previous")` reads that field.

Every move is conditional on the version read before: an S3 `If-Match` on its ETag
(`If-None-Match: *` for the first), or, in a folder, a compare of its SHA-256 under a lock
file. A writer whose condition fails gets `ReleaseConflict` naming the release that won;
it is not retried, since retrying would silently put the loser over the winner. Each
document carries a generation that grows by one per move, so no two versions have the same
bytes and an ETag never comes back (S3's ETag is the MD5 of the bytes).

On an S3 server that ignores the conditions (s3rver), aliases are not moved at all: the
store probes the server first and raises `ConditionalWritesIgnored` (see `_s3.py`).

Promote: production := the release, previous := the old production.
Rollback: production := previous (or a new record that redeployed its weights), previous :=
the production rolled back from; so rolling back twice returns to where it started.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from steps.releases._backend import Backend, Changed, Exists
from steps.releases._files import FileBackend
from steps.releases._s3 import S3Backend
from steps.releases.errors import RecordError, RecordExists, RecordNotFound, ReleaseConflict
from steps.releases.record import ReleaseRecord, WeightsRef, check_model_name, check_release_id

#: The alias names `alias()` answers.
ALIASES = ("production", "previous")


class AliasDocument(BaseModel):
    """The stored form of the production alias (with the previous one in it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = 1
    model: str
    release: str
    previous: str | None = None
    generation: int
    moved_at: AwareDatetime
    action: Literal["promote", "rollback"]


@dataclass(frozen=True)
class Aliases:
    """A model's aliases as read, with the version tag a later move is conditional on.

    Attributes:
        production: The release in production, or None before the first promotion.
        previous: The release production replaced last, or None.
        generation: How many times production has moved (0: never).
        etag: Tag of the version read (S3 ETag or SHA-256); None when there is none.
    """

    production: str | None
    previous: str | None
    generation: int
    etag: str | None


class RecordStore:
    """Release records and aliases below one URI; see the module docstring."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    @classmethod
    def open(cls, uri: str) -> "RecordStore":
        """The store at `s3://bucket[/prefix]` or `file:///absolute/path`.

        Raises:
            RecordError: any other URI.
        """
        parts = urlsplit(uri)
        if parts.scheme == "s3" and parts.netloc:
            return cls(S3Backend(parts.netloc, parts.path))
        if parts.scheme == "file" and not parts.netloc and parts.path.startswith("/"):
            return cls(FileBackend(Path(parts.path.rstrip("/") or "/")))
        raise RecordError(
            f"records URI {uri!r}: use s3://bucket/prefix or file:///absolute/path "
            "(spec `records.uri`, or --records)"
        )

    @property
    def uri(self) -> str:
        """The store's root URI."""
        return self._backend.uri

    def check_conditions(self) -> None:
        """Raise `ConditionalWritesIgnored` now if aliases cannot be moved in this store.

        `promote` and `rollback` check it themselves; a caller about to spend minutes on a
        deploy checks first, so it does not learn it only afterwards.
        """
        self._backend.check_conditions()

    def record_uri(self, model: str, release: str) -> str:
        """Where the record of `release` is (or would be)."""
        return f"{self.uri}/{self._record_key(model, release)}"

    def put(self, record: ReleaseRecord) -> str:
        """Store a new record and return its URI.

        Raises:
            RecordExists: a record with this id is stored already; records are never replaced.
        """
        key = self._record_key(record.model, record.release)
        try:
            self._backend.create(key, record.to_json().encode())
        except Exists:
            raise RecordExists(
                f"{self.record_uri(record.model, record.release)} exists: release "
                f"{record.release} of model {record.model} is recorded already, and records "
                "are never replaced; a new release run gets a new id"
            ) from None
        return self.record_uri(record.model, record.release)

    def get(self, model: str, release: str) -> ReleaseRecord:
        """The record of one release.

        Raises:
            RecordNotFound: there is none; `llmflow releases list MODEL` shows the ids.
        """
        blob = self._backend.read(self._record_key(model, release))
        uri = self.record_uri(model, release)
        if blob is None:
            raise RecordNotFound(
                f"{uri}: no record of release {release!r} of model {model!r}; "
                f"`llmflow releases list {model}` shows the recorded ones"
            )
        try:
            return ReleaseRecord.model_validate_json(blob.data)
        except ValidationError as exc:
            raise RecordError(f"{uri}: not a release record: {exc}") from None

    def releases(self, model: str) -> list[str]:
        """Ids of the model's recorded releases, newest first."""
        folder = f"{_model(model)}/records"
        ids = [name.removesuffix(".json") for name in self._backend.names(folder)]
        return sorted((i for i in ids if _is_release_id(i)), reverse=True)

    def aliases(self, model: str) -> Aliases:
        """Production and previous as they are now, with the tag to move them from."""
        blob = self._backend.read(self._alias_key(model))
        if blob is None:
            return Aliases(production=None, previous=None, generation=0, etag=None)
        try:
            doc = AliasDocument.model_validate_json(blob.data)
        except ValidationError as exc:
            raise RecordError(
                f"{self.uri}/{self._alias_key(model)}: not an alias document: {exc}"
            ) from None
        return Aliases(doc.release, doc.previous, doc.generation, blob.etag)

    def alias(self, model: str, name: str) -> ReleaseRecord | None:
        """The record an alias names (`production` or `previous`), or None if it names none."""
        if name not in ALIASES:
            raise RecordError(f"alias {name!r}: the aliases are {', '.join(ALIASES)}")
        state = self.aliases(model)
        release = state.production if name == "production" else state.previous
        return None if release is None else self.get(model, release)

    def promote(self, model: str, release: str, *, expected: Aliases | None = None) -> Aliases:
        """Make `release` production and the old production previous, if nobody moved them.

        Args:
            model: The model's name.
            release: A recorded release whose outcome is `production`.
            expected: The aliases as read before (say, when the release started); None reads
                them now. The move happens only if they are still so.

        Returns:
            The aliases after the move.

        Raises:
            ReleaseConflict: the aliases moved since `expected`; names the release that won.
            ConditionalWritesIgnored: the store cannot make the move conditional.
        """
        record = self._promotable(model, release)
        state = self.aliases(model) if expected is None else expected
        if state.production == release:
            raise RecordError(f"release {release} of model {model} is production already")
        return self._move(model, state, record.release, "promote")

    def rollback(
        self, model: str, *, to: str | None = None, expected: Aliases | None = None
    ) -> Aliases:
        """Make previous production again, and the production rolled back from previous.

        Args:
            model: The model's name.
            to: The release to make production instead of previous itself: a new record of
                a run that redeployed previous's weights (as `llmflow releases rollback`
                writes); its weights must be previous's.
            expected: The aliases as read before the redeploy; None reads them now.

        Returns:
            The aliases after the move.

        Raises:
            RecordError: there is no previous release, or `to` serves other weights.
            ReleaseConflict: the aliases moved since `expected`; names the release that won.
            ConditionalWritesIgnored: the store cannot make the move conditional.
        """
        state = self.aliases(model) if expected is None else expected
        if state.previous is None:
            raise RecordError(
                f"model {model} has no previous release to roll back to (production: "
                f"{state.production or 'none'}); promote a release first"
            )
        target = self._promotable(model, to or state.previous)
        if to is not None and to != state.previous:
            weights = self.get(model, state.previous).weights
            if weights is not None and not _same_weights(target.weights, weights):
                raise RecordError(
                    f"release {to} serves {_show(target.weights)}, not the weights of "
                    f"previous release {state.previous} ({_show(weights)}); roll back to a "
                    "record of those"
                )
        return self._move(model, state, target.release, "rollback")

    def _move(
        self, model: str, state: Aliases, release: str, action: Literal["promote", "rollback"]
    ) -> Aliases:
        """Write production := release, previous := state.production, if still at `state`."""
        self._backend.check_conditions()
        doc = AliasDocument(
            model=model,
            release=release,
            previous=state.production,
            generation=state.generation + 1,
            moved_at=datetime.now(UTC),
            action=action,
        )
        data = doc.model_dump_json(indent=2).encode() + b"\n"
        key = self._alias_key(model)
        try:
            etag = self._backend.swap(key, data, state.etag)
        except Changed:
            blob = self._backend.read(key)
            if blob is None or blob.data != data:  # equal: our own write, answered twice
                raise self._conflict(model, state, release, action) from None
            etag = blob.etag
        return Aliases(doc.release, doc.previous, doc.generation, etag)

    def _conflict(self, model: str, state: Aliases, release: str, action: str) -> ReleaseConflict:
        now = self.aliases(model)
        read = f"{state.production or 'none'} at generation {state.generation}"
        return ReleaseConflict(
            f"{action} of release {release} of model {model} refused: production moved "
            f"since it was read ({read}) and is now {now.production or 'none'} (generation "
            f"{now.generation}), which won; see `llmflow releases list {model}` and "
            f"{action} again only if {release} should replace it",
            winner=now.production,
        )

    def _promotable(self, model: str, release: str) -> ReleaseRecord:
        record = self.get(model, release)
        if record.outcome != "production":
            raise RecordError(
                f"release {release} of model {model} ended {record.outcome!r}: only a release "
                "whose outcome is 'production' can be production"
            )
        return record

    def _record_key(self, model: str, release: str) -> str:
        try:
            check_release_id(release)
        except ValueError as exc:
            raise RecordError(str(exc)) from None
        return f"{_model(model)}/records/{release}.json"

    def _alias_key(self, model: str) -> str:
        return f"{_model(model)}/aliases/production.json"

    # Last: below this, `list` names the method, not the type.
    def list(self, model: str) -> list[ReleaseRecord]:
        """The model's records, newest first; empty when it has none."""
        return [self.get(model, release) for release in self.releases(model)]


def _model(name: str) -> str:
    try:
        return check_model_name(name)
    except ValueError as exc:
        raise RecordError(str(exc)) from None


def _same_weights(a: WeightsRef | None, b: WeightsRef) -> bool:
    """Whether `a` is `b`: the same URI, and the same digest where both know it."""
    if a is None or a.uri != b.uri:
        return False
    return a.digest is None or b.digest is None or a.digest == b.digest


def _show(weights: WeightsRef | None) -> str:
    if weights is None:
        return "no recorded weights"
    return f"{weights.uri} {weights.digest or '(no digest)'}"


def _is_release_id(name: str) -> bool:
    try:
        check_release_id(name)
    except ValueError:
        return False
    return True
