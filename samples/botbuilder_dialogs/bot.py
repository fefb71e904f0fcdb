"""A Bot Framework SDK bot, unchanged but for where its state lives: turnstate, through BotBuilderStorage.

A ComponentDialog asks for a name and an age (validated), then remembers the profile in UserState.
"""

from __future__ import annotations

from botbuilder.core import ActivityHandler, ConversationState, MessageFactory, TurnContext, UserState
from botbuilder.dialogs import (
    ComponentDialog,
    DialogSet,
    DialogTurnStatus,
    WaterfallDialog,
    WaterfallStepContext,
)
from botbuilder.dialogs.prompts import NumberPrompt, PromptOptions, PromptValidatorContext, TextPrompt

from turnstate import StateManager, Storage
from turnstate.integrations.botbuilder import BotBuilderStorage, TurnStateMiddleware


class ProfileDialog(ComponentDialog):
    def __init__(self, user_state: UserState) -> None:
        super().__init__("profile")
        self.profile = user_state.create_property("profile")
        self.add_dialog(TextPrompt("name"))
        self.add_dialog(NumberPrompt("age", self.valid_age))
        self.add_dialog(WaterfallDialog("steps", [self.ask_name, self.ask_age, self.save]))
        self.initial_dialog_id = "steps"

    async def ask_name(self, step: WaterfallStepContext) -> DialogTurnStatus:
        return await step.prompt("name", PromptOptions(prompt=MessageFactory.text("What is your name?")))

    async def ask_age(self, step: WaterfallStepContext) -> DialogTurnStatus:
        step.values["name"] = step.result
        retry = MessageFactory.text("Please give an age between 1 and 120.")
        ask = MessageFactory.text(f"How old are you, {step.result}?")
        return await step.prompt("age", PromptOptions(prompt=ask, retry_prompt=retry))

    async def save(self, step: WaterfallStepContext) -> DialogTurnStatus:
        profile = {"name": step.values["name"], "age": int(step.result)}
        await self.profile.set(step.context, profile)
        await step.context.send_activity(f"Thanks {profile['name']}, you are {profile['age']}.")
        return await step.end_dialog(profile)

    @staticmethod
    async def valid_age(prompt: PromptValidatorContext) -> bool:
        return prompt.recognized.succeeded and 1 <= prompt.recognized.value <= 120


class ProfileBot(ActivityHandler):
    def __init__(self, conversation_state: ConversationState, user_state: UserState) -> None:
        self.conversation_state, self.user_state = conversation_state, user_state
        self.dialogs = DialogSet(conversation_state.create_property("DialogState"))
        self.dialogs.add(ProfileDialog(user_state))

    async def on_turn(self, turn_context: TurnContext) -> None:
        await super().on_turn(turn_context)
        await self.conversation_state.save_changes(turn_context)
        await self.user_state.save_changes(turn_context)

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        dialog_context = await self.dialogs.create_context(turn_context)
        if (await dialog_context.continue_dialog()).status == DialogTurnStatus.Empty:
            await dialog_context.begin_dialog("profile")


def wire(adapter: object, storage: Storage) -> ProfileBot:
    """The bot with its state in ``storage``; the adapter drops redelivered activities."""
    bridge = BotBuilderStorage(storage)
    adapter.use(TurnStateMiddleware(StateManager(storage)))  # type: ignore[attr-defined]
    return ProfileBot(ConversationState(bridge), UserState(bridge))
