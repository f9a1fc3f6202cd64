"""Every change to a case is a command, processed as one database transaction.

Each module holds the commands of one concept; :class:`Engine` puts them together. See ``base`` for how a
command loads, advances and saves an instance.
"""

from __future__ import annotations

from engine.commands.base import Clock, EngineConfig, system_clock, validate_text, validate_variables
from engine.commands.definitions import DeployCommands
from engine.commands.forms import FormCommands
from engine.commands.instances import InstanceCommands
from engine.commands.jobs import JobCommands
from engine.commands.messages import MessageCommands
from engine.commands.tasks import TaskCommands
from engine.commands.timers import TimerCommands


class Engine(
    DeployCommands, InstanceCommands, TaskCommands, FormCommands, MessageCommands, TimerCommands, JobCommands
):
    """The engine's command side: one method per command, each one transaction."""


__all__ = ["Clock", "Engine", "EngineConfig", "system_clock", "validate_text", "validate_variables"]
