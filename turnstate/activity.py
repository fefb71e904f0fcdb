"""A typed Bot Framework activity (the camelCase JSON the channels send), decoded with msgspec."""

from __future__ import annotations

from typing import Any

import msgspec


class ChannelAccount(msgspec.Struct, rename="camel", omit_defaults=True):
    """A user or bot on a channel."""

    id: str | None = None
    name: str | None = None
    aad_object_id: str | None = None
    role: str | None = None


class ConversationAccount(msgspec.Struct, rename="camel", omit_defaults=True):
    """The conversation an activity belongs to."""

    id: str | None = None
    name: str | None = None
    conversation_type: str | None = None
    tenant_id: str | None = None
    is_group: bool | None = None


class Activity(msgspec.Struct, rename="camel", omit_defaults=True):
    """The fields of a Bot Framework activity that bots commonly use; unknown fields are ignored."""

    type: str = "message"
    id: str | None = None
    timestamp: str | None = None
    channel_id: str | None = None
    service_url: str | None = None
    from_: ChannelAccount | None = msgspec.field(default=None, name="from")
    conversation: ConversationAccount | None = None
    recipient: ChannelAccount | None = None
    text: str | None = None
    text_format: str | None = None
    locale: str | None = None
    name: str | None = None
    value: Any = None
    reply_to_id: str | None = None
    attachments: list[dict[str, Any]] | None = None
    entities: list[dict[str, Any]] | None = None
    channel_data: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Activity:
        """Build from a JSON-like dict, validating field types."""
        return msgspec.convert(data, cls)

    def to_dict(self) -> dict[str, Any]:
        """The camelCase JSON form."""
        result: dict[str, Any] = msgspec.to_builtins(self)
        return {"type": self.type, **result}
