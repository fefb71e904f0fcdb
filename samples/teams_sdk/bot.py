"""A counter app on the Teams SDK (microsoft-teams-apps 2.x) whose state lives in turnstate.

``TurnStateMiddleware`` runs each activity's handlers inside one turnstate turn: loaded in one read,
committed in one write if they succeed, concurrent increments merged, a Teams retry of an activity
already handled dropped. ``python drive.py`` runs it offline; ``python bot.py`` serves it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from microsoft_teams.apps import ActivityContext, App

from turnstate import FileStorage, StateManager
from turnstate.integrations.teams import TurnStateMiddleware, state_of


def make_app(state_dir: str, **options: Any) -> App:
    manager = StateManager(FileStorage(state_dir), ttl={"conversation": 7 * 86400})
    app = App(**options)
    app.use(TurnStateMiddleware(manager))  # first: the handlers below run inside its turn

    @app.on_message
    async def on_message(ctx: ActivityContext[Any]) -> None:
        state = state_of(ctx)
        count = state.conversation.incr("count")
        name = state.user.get("name") or ctx.activity.from_.name
        state.user.set("name", name)
        await ctx.send(f"Turn #{count}, {name}")

    return app


if __name__ == "__main__":
    asyncio.run(make_app("./teams-state").start())
