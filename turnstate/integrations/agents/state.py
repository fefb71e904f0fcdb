"""The ``TurnState`` of an Agents SDK ``AgentApplication``, backed by turnstate.

Handlers keep the SDK's API (``state.conversation.get_value("count")``, ``state.user.set_value(...)``,
``state.get_value("ConversationState.count")`` or ``"conversation.count"``, ``state.temp``, property
accessors); the scopes they reach are turnstate scopes of the turn that :class:`TurnStateMiddleware`
runs, so the turn commits in one conditional write, concurrent turns merge, and a redelivered activity is
not handled twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from microsoft_agents.hosting.core import ConversationState, StoreItem, TurnContext, UserState
from microsoft_agents.hosting.core import TurnState as SdkTurnState
from microsoft_agents.hosting.core.state import AgentState
from microsoft_agents.hosting.core.storage import Storage as SdkStorage

from turnstate.errors import StateError, UnknownScopeError
from turnstate.integrations.agents.middleware import STATE_KEY, VERDICT_KEY
from turnstate.scopes import CONVERSATION, PRIVATE, TEMP, USER
from turnstate.state import ScopeState, TurnState

_SDK_NAMES = {CONVERSATION: ConversationState.__name__, USER: UserState.__name__}
"""turnstate scope names whose SDK scope is named after its class, as in ``"ConversationState.count"``."""


class _Scope:
    """The SDK's AgentState calls over one turnstate scope. Property names are turnstate paths."""

    _scope: ScopeState
    _live: dict[str, StoreItem]

    def _bind(self, scope: ScopeState) -> None:
        self._scope = scope
        self._live = {}  # StoreItem objects handed out or set, serialized again when the turn saves

    @property
    def scope(self) -> ScopeState:
        """The turnstate scope: ``incr``, typed ``get`` and the rest of its API."""
        return self._scope

    def get_value(
        self,
        property_name: str,
        default_value_factory: Callable[[], Any] | None = None,
        *,
        target_cls: type[Any] | None = None,
    ) -> Any:
        """The value at ``property_name``; when absent or null, ``default_value_factory()`` stored and
        returned. A StoreItem ``target_cls`` builds the item from its JSON (changes to it are stored when
        the turn saves); another type converts the value as ``ScopeState.get`` does."""
        live = self._live.get(property_name)
        if live is not None:
            return live
        scope = self._scope
        if scope.get(property_name) is None:
            if default_value_factory is None:
                return None
            self.set_value(property_name, default_value_factory())
            live = self._live.get(property_name)
            if live is not None:
                return live
        if isinstance(target_cls, type) and issubclass(target_cls, StoreItem):
            item = target_cls.from_json_to_store_item(scope.get(property_name))
            self._live[property_name] = item
            return item
        return scope.get(property_name) if target_cls is None else scope.get(property_name, target_cls)

    def set_value(self, property_name: str, value: Any) -> None:
        """Store ``value`` (a StoreItem as its ``store_item_to_json()``); refused at once if not JSON."""
        if isinstance(value, StoreItem):
            self._scope.set(property_name, value.store_item_to_json())
            self._live[property_name] = value
            return
        self._live.pop(property_name, None)
        self._scope.set(property_name, value)

    def delete_value(self, property_name: str) -> None:
        self._live.pop(property_name, None)
        self._scope.delete(property_name)

    def has_value(self, property_name: str) -> bool:
        return property_name in self._live or self._scope.has(property_name)

    def clear(self, turn_context: TurnContext | None = None) -> None:
        self._live.clear()
        self._scope.clear()

    async def delete(self, turn_context: TurnContext) -> None:
        """Remove every field; the turn's commit stores the scope empty."""
        self.clear()

    def get(self, turn_context: TurnContext | None = None) -> dict[str, Any]:
        """A copy of the scope's fields."""
        self.flush()
        return self._scope.to_dict()

    async def load(self, turn_context: TurnContext, force: bool = False) -> None:
        """Nothing to do: the scope was loaded with the turn."""

    async def save(self, turn_context: TurnContext, force: bool = False) -> None:
        """Nothing to write now: the turn commits every scope at once when it ends."""
        self.flush()

    def get_storage_key(self, turn_context: TurnContext, *, target_cls: type[StoreItem] | None = None) -> str:
        return self._scope.key or ""

    def flush(self) -> None:
        """Store the JSON of the StoreItem objects this turn handed out or set, as they are now."""
        for name, item in self._live.items():
            self._scope.set(name, item.store_item_to_json())


class AgentConversationState(_Scope, ConversationState):
    """``state.conversation``: the turnstate conversation scope."""

    def __init__(self, scope: ScopeState) -> None:
        AgentState.__init__(self, cast(SdkStorage, None), ConversationState.CONTEXT_SERVICE_KEY)
        self._bind(scope)


class AgentUserState(_Scope, UserState):
    """``state.user``: the turnstate user scope."""

    def __init__(self, scope: ScopeState) -> None:
        self.namespace = ""
        AgentState.__init__(self, cast(SdkStorage, None), "Internal.UserState")
        self._bind(scope)


class AgentScopeState(_Scope, AgentState):
    """The private conversation scope or a custom turnstate scope, by its turnstate name."""

    def __init__(self, scope: ScopeState) -> None:
        AgentState.__init__(self, cast(SdkStorage, None), scope.name)
        self._bind(scope)


class AgentTurnState(SdkTurnState):
    """An AgentApplication's TurnState over the turnstate TurnState of the turn.

    Pass the class as ``turn_state_factory`` (with ``TurnStateMiddleware`` on the adapter). Scopes:
    ``"ConversationState"`` (also ``"conversation"``), ``"UserState"`` (also ``"user"``), ``"private"``,
    each custom turnstate scope by its name, and the SDK's ``"temp"``, which is never stored. A bare name
    is temp, as in the SDK. ``save()`` stores nothing by itself: it tells the middleware that the
    application finished the turn, and the turn then commits in one write when the agent returns.
    """

    def __init__(self) -> None:
        super().__init__()
        self._turnstate: TurnState | None = None
        self._context: TurnContext | None = None

    @property
    def turnstate(self) -> TurnState:
        """The turnstate TurnState of this turn (``incr``, ``resumed``, checkpoints with ``save()``)."""
        if self._turnstate is None:
            raise StateError("this AgentTurnState is not loaded yet; the application loads it each turn")
        return self._turnstate

    async def load(self, context: TurnContext, storage: SdkStorage | None = None) -> AgentTurnState:
        """Take the scopes of the turn TurnStateMiddleware opened for ``context``."""
        state = context.turn_state.get(STATE_KEY)
        if not isinstance(state, TurnState):
            raise StateError(
                "AgentTurnState needs TurnStateMiddleware on the adapter: "
                "adapter.use(TurnStateMiddleware(StateManager(storage))) before the application runs"
            )
        self._turnstate = state
        self._context = context
        for name in state.scope_names:
            if name == TEMP:
                continue
            scope = state.scope(name)
            if name == CONVERSATION:
                self._scopes[_SDK_NAMES[name]] = AgentConversationState(scope)
            elif name == USER:
                self._scopes[_SDK_NAMES[name]] = AgentUserState(scope)
            else:
                self._scopes[name] = AgentScopeState(scope)
        context.turn_state[VERDICT_KEY] = False
        return self

    async def save(self, turn_context: TurnContext, force: bool = False) -> None:
        """Mark the turn successful; its changes commit when the agent returns."""
        for scope in self._scopes.values():
            if isinstance(scope, _Scope):
                scope.flush()
        turn_context.turn_state[VERDICT_KEY] = True

    def get_scope_by_name(self, scope: str) -> AgentState:
        """The scope called ``scope`` (turnstate names too: ``"conversation"``, ``"user"``)."""
        found = self._scopes.get(_SDK_NAMES.get(scope, scope))
        if found is None:
            known = [*self._scopes, *(n for n, sdk in _SDK_NAMES.items() if sdk in self._scopes)]
            raise UnknownScopeError(scope, known)
        return found

    def scope(self, name: str) -> AgentState:
        """A scope by name, as :meth:`get_scope_by_name`."""
        return self.get_scope_by_name(name)

    @property
    def private(self) -> AgentState:
        """The private conversation scope (one user inside one conversation)."""
        return self.get_scope_by_name(PRIVATE)
