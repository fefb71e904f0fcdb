"""Agents SDK agents for the integration tests: a CloudAdapter with TurnStateMiddleware and an
AgentApplication whose TurnState is turnstate's, driven in process with the expect-replies delivery mode."""

from __future__ import annotations

from typing import Any

from microsoft_agents.activity import Activity
from microsoft_agents.hosting.aiohttp import CloudAdapter
from microsoft_agents.hosting.core import AgentApplication, TurnContext
from microsoft_agents.hosting.core.app.proactive import ProactiveOptions
from microsoft_agents.hosting.core.authorization import ClaimsIdentity

from turnstate import StateManager
from turnstate.integrations.agents import AgentsStorage, AgentTurnState, TurnStateMiddleware


class NoConnections:
    """The connection manager an anonymous (unauthenticated, loopback) agent never asks for a token."""

    def get_connection(self, connection_name: str) -> Any:
        raise AssertionError("an anonymous test agent asked for a connection")

    def get_default_connection(self) -> Any:
        raise AssertionError("an anonymous test agent asked for a connection")

    def get_token_provider(self, claims_identity: Any, service_url: str) -> Any:
        raise AssertionError("an anonymous test agent asked for a token provider")

    def get_default_connection_configuration(self) -> Any:
        raise AssertionError("an anonymous test agent asked for a connection")


class Agent:
    """One agent instance: its manager, adapter (with the middleware) and AgentApplication."""

    def __init__(
        self,
        manager: StateManager,
        *,
        with_middleware: bool = True,
        proactive: AgentsStorage | None = None,
        **middleware: Any,
    ) -> None:
        self.manager = manager
        self.adapter = CloudAdapter(connection_manager=NoConnections())  # type: ignore[arg-type]
        if with_middleware:
            self.adapter.use(TurnStateMiddleware(manager, **middleware))
        self.app: AgentApplication[AgentTurnState] = AgentApplication[AgentTurnState](
            storage=AgentsStorage(manager.storage),
            connection_manager=NoConnections(),
            turn_state_factory=AgentTurnState,
            start_typing_timer=False,
            proactive=None if proactive is None else ProactiveOptions(storage=proactive),
        )
        self.handled: list[str] = []

    async def send(self, activity: dict[str, Any]) -> list[str]:
        """Run one turn for ``activity``; the texts of the agent's replies."""
        act = Activity.model_validate({**activity, "deliveryMode": "expectReplies"})
        response = await self.adapter.process_activity(ClaimsIdentity(), act, self.app.on_turn)
        body = response.body if response is not None else None
        replies = body.get("activities", []) if isinstance(body, dict) else []
        return [r["text"] for r in replies if r.get("type") == "message"]


def counting_agent(manager: StateManager, **middleware: Any) -> Agent:
    """An agent that counts messages per conversation with the SDK's state API and replies with the count."""
    agent = Agent(manager, **middleware)

    @agent.app.activity("message")
    async def on_message(context: TurnContext, state: AgentTurnState) -> None:
        agent.handled.append(str(context.activity.id))
        if context.activity.text == "crash":
            state.set_value("ConversationState.count", -1)
            raise RuntimeError("handler failed")
        count = state.conversation.get_value("count", lambda: 0) + 1
        state.set_value("ConversationState.count", count)
        state.user.set_value("name", context.activity.from_property.name)
        await context.send_activity(f"Turn #{count}")

    return agent
