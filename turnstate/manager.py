"""Per-bot state configuration: which scopes, how they are keyed, merged, expired and protected.

:class:`StateManager` holds configuration only and hands out one :class:`~turnstate.turn.Turn` per
activity; everything a turn works on lives in the Turn.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from turnstate.activity import Activity
from turnstate.cache import DocumentCache
from turnstate.codec import FieldCodec
from turnstate.config import TurnConfig, TurnPlan
from turnstate.crypto import FieldEncryption, check_decrypted_cache
from turnstate.errors import SecretValueError, StateError
from turnstate.keyring import KeyRing, KeySource, load_keys
from turnstate.keys import KeyResult, KeyScheme, TurnIds
from turnstate.loader import DocumentLoader
from turnstate.merge import MergePolicies, Policy
from turnstate.paths import Path, join, matches, parse
from turnstate.queue import CommitQueue
from turnstate.redelivery import SeenWindow
from turnstate.scopes import BUILTIN_SCOPES, Scope, ScopeSpec, build_specs
from turnstate.secrets import find_secret
from turnstate.state import ScopeState, UnavailableScope, ValueGuard
from turnstate.stats import Stats
from turnstate.storage.base import Storage
from turnstate.turn import OnConflict, Turn

if TYPE_CHECKING:
    from turnstate.telemetry import Telemetry


class StateManager:
    """Per-bot state configuration; call :meth:`turn` once per activity.

    ``scopes``: custom scopes. ``builtin_scopes``: which of conversation, user and private to load.
    ``ttl``: seconds per scope name (None = never expires), applied on every write. ``merge``: policy per
    path pattern for fields both this turn and a concurrent one changed; ``default_merge`` for the rest.
    ``on_conflict="merge"`` merges and retries inside the commit; ``"raise"`` surfaces
    :class:`~turnstate.errors.PreconditionFailedError` so a runtime can re-run the turn instead (once a
    storage without atomic batches has written part of the commit, the rest is merged: nothing applies twice).
    ``dedupe``: remember the last ``dedupe_window`` activity ids (for ``dedupe_max_age`` seconds) in each
    document to detect redelivery.

    ``encrypt``: paths (scope first, ``*`` for one field name) stored AES-256-GCM encrypted, with ``keys``
    (a :class:`~turnstate.keyring.KeyRing`, checked now, or a key provider, loaded by the first turn).
    ``migrate_plaintext`` lets plaintext already stored at those paths be read (it is encrypted on the
    next write). ``codec`` replaces the built-in field encryption with your own transform.
    ``refuse_secrets``: ``set`` refuses values that look like bearer tokens, JWTs or API keys, except at
    the ``allow_secrets`` paths.

    ``document_cache``: how many recently loaded or written documents (of up to 16 KiB stored each) to
    keep decoded, so a turn whose documents are stored exactly as this process last saw them skips
    decoding them (0 turns this off). Kept in their stored form, except that with field encryption and
    ``decrypted_cache`` on, documents this manager wrote are kept decrypted.
    ``decrypted_cache``: how many encrypted fields' envelopes to remember the plaintext of, so a turn
    skips AES for fields this process read before and that are stored unchanged (0 turns this off, and
    keeps every cached document in its stored form); see :class:`~turnstate.crypto.FieldEncryption`.

    ``telemetry``: a :class:`~turnstate.telemetry.Telemetry` (the ``otel`` extra) tracing each turn's load,
    commit and storage calls and counting :attr:`stats` as OpenTelemetry metrics.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        scopes: Iterable[Scope] = (),
        builtin_scopes: Iterable[str] = BUILTIN_SCOPES,
        ttl: Mapping[str, float | None] | None = None,
        key_scheme: KeyScheme | None = None,
        merge: Mapping[str, Policy] | None = None,
        default_merge: Policy = "last",
        on_conflict: Literal["merge", "raise"] = "merge",
        max_commit_attempts: int = 25,
        backoff: float = 0.005,
        dedupe: bool = True,
        dedupe_window: int = 32,
        dedupe_max_age: float = 3600.0,
        encrypt: Iterable[str] = (),
        keys: KeySource | None = None,
        migrate_plaintext: bool = False,
        codec: FieldCodec | None = None,
        refuse_secrets: bool = True,
        allow_secrets: Iterable[str] = (),
        document_cache: int = 1024,
        decrypted_cache: int = 4096,
        telemetry: Telemetry | None = None,
    ) -> None:
        enabled = tuple(builtin_scopes)
        _check_options(storage, enabled, on_conflict, max_commit_attempts, document_cache)
        self.storage = storage
        self.key_scheme = key_scheme or KeyScheme()
        specs = build_specs(self.key_scheme, tuple(scopes), dict(ttl or {}))
        self.disabled = tuple(name for name in BUILTIN_SCOPES if name not in enabled)
        self.builtin_specs, self.custom_specs = _split_specs(specs, enabled)
        self.policies = MergePolicies(merge, default_merge)
        self.on_conflict = on_conflict
        self.max_commit_attempts = max_commit_attempts
        self.backoff = backoff
        self.window = SeenWindow(dedupe_window, dedupe_max_age) if dedupe else None
        self.documents = DocumentCache(document_cache) if document_cache else None
        # scopes that are off for every turn: built once, they hold nothing and only raise
        self.unavailable: dict[str, ScopeState] = {n: UnavailableScope(n, None) for n in self.disabled}
        encryption = _Encryption(tuple(encrypt), keys, migrate_plaintext, decrypted_cache)
        encryption.check({spec.name for spec in specs}, codec)
        self.loader = DocumentLoader(
            self.documents, encryption.codec() or codec, make_codec=encryption.maker()
        )
        """Decodes and decrypts the documents turns read, through the document cache."""
        self.guard = _secrets_guard(tuple(parse(p) for p in allow_secrets)) if refuse_secrets else None
        self._plan_cache: dict[tuple[str | None, ...], TurnPlan] = {}
        self.stats = Stats()
        """Counts of turns, commits, writes, conflicts, merges, retries, duplicates, reruns and discards."""
        self.telemetry = telemetry
        self._make_turn: Callable[[TurnConfig, Any, OnConflict], Turn] = Turn
        if telemetry is not None:  # its turns trace themselves, and its storage calls
            storage, self._make_turn = telemetry.instrument(storage, self.stats)
        self.config = TurnConfig(
            storage, self.plan, self.loader, self.window, self.policies, on_conflict, max_commit_attempts,
            backoff, self.guard, CommitQueue(), self.stats, telemetry,
        )  # fmt: skip
        """What each of this manager's turns works with."""

    @property
    def codec(self) -> FieldCodec | None:
        """The field codec (field encryption) in use; None before a key provider's keys are loaded."""
        return self.loader.codec

    def plan(self, ids: TurnIds, activity: Any) -> TurnPlan:
        """Which documents a turn for ``activity`` loads, and which scopes it cannot use (and why)."""
        cache_key = (ids.channel, ids.conversation, ids.user, ids.bot, ids.tenant)
        builtin = self._plan_cache.get(cache_key)
        if builtin is None:
            builtin = self._plan(
                [(spec, spec.resolve(self.key_scheme, ids, activity)) for spec in self.builtin_specs]
            )
            if len(self._plan_cache) >= 4096:
                self._plan_cache.clear()
            self._plan_cache[cache_key] = builtin
        if not self.custom_specs:
            return builtin
        resolved = [(spec, KeyResult(key)) for spec, key in builtin.wanted]
        resolved += [(spec, KeyResult(None, missing)) for spec, missing in builtin.missing]
        if isinstance(activity, dict):
            # key functions get an Activity whichever way the turn was started: converted once, here,
            # so turns without custom scopes never pay for it
            activity = _typed(activity, self.custom_specs[0].name)
        for spec in self.custom_specs:
            try:
                resolved.append((spec, spec.resolve(self.key_scheme, ids, activity)))
            except Exception as exc:
                raise StateError(f"the key function of scope {spec.name!r} failed: {exc!r}") from exc
        return self._plan(resolved)

    def _plan(self, resolved: list[tuple[ScopeSpec, KeyResult]]) -> TurnPlan:
        wanted = tuple((spec, result.key) for spec, result in resolved if result.key is not None)
        missing = tuple((spec, result.missing or "id") for spec, result in resolved if result.key is None)
        unavailable = dict(self.unavailable)
        for spec, why in missing:
            unavailable[spec.name] = UnavailableScope(spec.name, why)
        return TurnPlan(wanted, [key for _, key in wanted], unavailable, missing)

    @property
    def keys_pending(self) -> bool:
        """Whether the encryption keys still have to be loaded from the key provider (the first turn does)."""
        return self.loader.waiting

    def turn(self, activity: Any, *, on_conflict: Literal["merge", "raise"] | None = None) -> Turn:
        """The state of one turn for ``activity``, as an async context manager.

        ``on_conflict`` overrides the manager's setting for this turn's commit.
        """
        return self._make_turn(self.config, activity, on_conflict)

    async def load_keys(self) -> None:
        """Load encryption keys from the key provider now (the first turn does it otherwise)."""
        await self.loader.prepare()


def _split_specs(
    specs: tuple[ScopeSpec, ...], enabled: tuple[str, ...]
) -> tuple[tuple[ScopeSpec, ...], tuple[ScopeSpec, ...]]:
    """The enabled built-in scopes' specs, and the custom ones'."""
    builtin = tuple(s for s in specs[: len(BUILTIN_SCOPES)] if s.name in enabled)
    return builtin, specs[len(BUILTIN_SCOPES) :]


def _check_options(
    storage: Storage,
    enabled: tuple[str, ...],
    on_conflict: str,
    max_commit_attempts: int,
    document_cache: int,
) -> None:
    unknown = set(enabled) - set(BUILTIN_SCOPES)
    if unknown:
        raise ValueError(
            f"builtin_scopes takes {', '.join(BUILTIN_SCOPES)}; got {', '.join(sorted(unknown))}"
        )
    if not isinstance(storage, Storage):
        raise TypeError(f"storage must be a turnstate Storage, got {type(storage).__name__}")
    if on_conflict not in ("merge", "raise"):
        raise ValueError(f"on_conflict must be 'merge' or 'raise', got {on_conflict!r}")
    if max_commit_attempts < 1:
        raise ValueError(f"max_commit_attempts must be at least 1, got {max_commit_attempts!r}")
    if document_cache < 0:
        raise ValueError(f"document_cache must be 0 (off) or more documents, got {document_cache!r}")


class _Encryption:
    """The field-encryption options of a manager, checked, and the codec they make."""

    def __init__(
        self, paths: tuple[str, ...], keys: KeySource | None, migrate_plaintext: bool, decrypted_cache: int
    ) -> None:
        self.paths = paths
        self.keys = keys
        self.migrate_plaintext = migrate_plaintext
        self.decrypted_cache = decrypted_cache

    def check(self, known: set[str], codec: FieldCodec | None) -> None:
        """Raise ValueError for options that cannot work together."""
        if not self.paths:
            if self.keys is not None:
                raise ValueError("keys were given but no paths to encrypt; pass encrypt=[...]")
            return
        if codec is not None:
            raise ValueError("pass either encrypt=[...] with keys, or a codec, not both")
        if self.keys is None:
            raise ValueError(
                "encrypt=[...] needs keys: a KeyRing (e.g. KeyRing.from_env()) or a key provider"
            )
        FieldEncryption.check_paths(self.paths)
        check_decrypted_cache(self.decrypted_cache)
        encrypted = {parse(path)[0] for path in self.paths}
        if not encrypted <= known:
            raise ValueError(
                f"encrypt names unknown scopes {', '.join(sorted(encrypted - known))}; scopes: "
                f"{', '.join(sorted(known))} (temp is never stored, so it is never encrypted)"
            )

    def codec(self) -> FieldEncryption | None:
        """The field encryption, if the keys are at hand (a KeyRing)."""
        if not self.paths or not isinstance(self.keys, KeyRing):
            return None
        return self._with(self.keys)

    def maker(self) -> Callable[[], Awaitable[FieldCodec]] | None:
        """What makes the field encryption once a key provider gave the keys; None if not needed."""
        keys = self.keys
        if not self.paths or keys is None or isinstance(keys, KeyRing):
            return None

        async def make() -> FieldCodec:
            return self._with(await load_keys(keys))

        return make

    def _with(self, ring: KeyRing) -> FieldEncryption:
        return FieldEncryption(
            self.paths, ring, allow_plaintext=self.migrate_plaintext, decrypted_cache=self.decrypted_cache
        )


def _typed(activity: dict[str, Any], scope: str) -> Activity:
    try:
        return Activity.from_dict(activity)
    except msgspec.ValidationError as exc:
        raise StateError(
            f"the key function of scope {scope!r} needs the activity as an Activity, but the activity dict "
            f"is not a valid Bot Framework activity ({exc}); fix the field named there in what the channel "
            "or the caller of manager.turn() passed"
        ) from exc


def _secrets_guard(allowed: tuple[Path, ...]) -> ValueGuard:
    def guard(scope: str, path: Path, value: Any) -> None:
        found = find_secret(value)
        if found is not None:
            full = (scope, *path)
            if not any(matches(pattern, full) for pattern in allowed):
                raise SecretValueError(join(scope, *path), found)

    return guard
