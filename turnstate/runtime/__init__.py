"""A small reference bot runtime: middleware, handlers by activity type, and state.

It exists to run turnstate end to end without a framework; the state middleware it uses works with any
runtime.
"""

from turnstate.runtime.bot import Bot, Handler, Middleware
from turnstate.runtime.context import TurnContext

__all__ = ["Bot", "Handler", "Middleware", "TurnContext"]
