"""Storage keys for state scopes: one scheme, rendered unambiguously.

A key is the scope name followed by tagged segments, each ``tag=value`` with ``%`` and ``/`` in the value
percent-escaped, in a fixed order::

    conversation/channel=msteams/tenant=72f9.../bot=28:app-id/conversation=19:abc@thread.v2
    user/channel=msteams/tenant=72f9.../bot=28:app-id/user=29:1xyz
    private/channel=msteams/tenant=.../bot=.../conversation=.../user=...
    incident/channel=msteams/tenant=.../bot=.../id=INC-42

``tenant`` and ``bot`` appear when the activity carries them (conversation.tenantId or
channelData.tenant.id; recipient.id), keeping tenants and bots that share a store apart. Because every
segment is tagged and escaped, two different id sets never render the same key. An id a scope needs that
the activity lacks makes that scope unavailable (:class:`~turnstate.errors.MissingIdError` on use) instead
of falling back to a shared key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from turnstate.activity import Activity


class TurnIds(msgspec.Struct, frozen=True, gc=False):
    """The ids an activity carries that state keys are built from."""

    channel: str | None = None
    conversation: str | None = None
    user: str | None = None
    bot: str | None = None
    tenant: str | None = None
    activity: str | None = None


def _attr(obj: Any, *names: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        for name in names:
            if name in obj:
                return obj[name]
        return None
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _str_or_none(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def ids_of(activity: Any) -> TurnIds:
    """Extract ids from an Activity, a camelCase dict, or any object with Bot Framework attribute names.

    Works with this package's Activity, botbuilder's Activity (``from_property``, ``channel_id``) and plain
    JSON dicts.
    """
    if isinstance(activity, Activity):
        conv = activity.conversation
        tenant = conv.tenant_id if conv is not None else None
        if tenant is None and activity.channel_data:
            tenant = _attr(activity.channel_data.get("tenant"), "id")
        if tenant.__class__ is not str:  # from channelData: any JSON value
            tenant = _str_or_none(tenant)
        sender, recipient = activity.from_, activity.recipient
        return TurnIds(
            activity.channel_id or None,
            (conv.id or None) if conv is not None else None,
            (sender.id or None) if sender is not None else None,
            (recipient.id or None) if recipient is not None else None,
            tenant or None,
            activity.id or None,
        )
    conv = _attr(activity, "conversation")
    sender = _attr(activity, "from", "from_", "from_property")
    tenant = _attr(conv, "tenantId", "tenant_id")
    if tenant is None:
        tenant = _attr(_attr(_attr(activity, "channelData", "channel_data"), "tenant"), "id")
    return TurnIds(
        channel=_str_or_none(_attr(activity, "channelId", "channel_id")),
        conversation=_str_or_none(_attr(conv, "id")),
        user=_str_or_none(_attr(sender, "id")),
        bot=_str_or_none(_attr(_attr(activity, "recipient"), "id")),
        tenant=_str_or_none(tenant),
        activity=_str_or_none(_attr(activity, "id")),
    )


def _esc(value: str) -> str:
    return value.replace("%", "%25").replace("/", "%2F")


class KeyResult(msgspec.Struct, frozen=True, gc=False):
    """A scope's storage key, or the name of the id that was missing."""

    key: str | None
    missing: str | None = None


@dataclass(frozen=True, slots=True)
class KeyScheme:
    """Renders storage keys. ``isolate_bots`` and ``isolate_tenants`` add the bot and tenant segments."""

    isolate_bots: bool = True
    isolate_tenants: bool = True

    def render(self, scope: str, ids: TurnIds, *segments: tuple[str, str]) -> str:
        parts = [scope]
        parts.append("channel=" + _esc(ids.channel or ""))
        if self.isolate_tenants and ids.tenant:
            parts.append("tenant=" + _esc(ids.tenant))
        if self.isolate_bots and ids.bot:
            parts.append("bot=" + _esc(ids.bot))
        parts.extend(f"{tag}={_esc(value)}" for tag, value in segments)
        return "/".join(parts)

    def conversation(self, ids: TurnIds) -> KeyResult:
        if ids.channel is None:
            return KeyResult(None, "channel id (activity.channelId)")
        if ids.conversation is None:
            return KeyResult(None, "conversation id (activity.conversation.id)")
        return KeyResult(self.render("conversation", ids, ("conversation", ids.conversation)))

    def user(self, ids: TurnIds) -> KeyResult:
        if ids.channel is None:
            return KeyResult(None, "channel id (activity.channelId)")
        if ids.user is None:
            return KeyResult(None, "user id (activity.from.id)")
        return KeyResult(self.render("user", ids, ("user", ids.user)))

    def private(self, ids: TurnIds) -> KeyResult:
        if ids.channel is None or ids.conversation is None or ids.user is None:
            return KeyResult(None, self.conversation(ids).missing or self.user(ids).missing)
        return KeyResult(self.render("private", ids, ("conversation", ids.conversation), ("user", ids.user)))

    def custom(self, scope: str, ids: TurnIds, scope_id: str | None) -> KeyResult:
        if ids.channel is None:
            return KeyResult(None, "channel id (activity.channelId)")
        if not scope_id:
            return KeyResult(None, f"{scope} id (the scope's key function returned nothing)")
        return KeyResult(self.render(scope, ids, ("id", scope_id)))
