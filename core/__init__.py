"""servermode.core: the framework-free heart of servermode.

The mode machine (:mod:`.machine`), the request gate (:mod:`.gate`) under an admission policy
(:mod:`.policy`), and the controller (:mod:`.controller`) that runs mode changes, persists
them through a :class:`Store` and audits them. Nothing here knows of HTTP.
"""

from __future__ import annotations

from .audit import AUDIT_EVENT, AUDIT_LOGGER, AuditLog
from .controller import MAX_DRAIN_TIMEOUT, ModeController, ModeStatus
from .errors import (
    InvalidMode,
    ModeChangeCancelled,
    ModeChangeFailed,
    ModeChangeInterrupted,
    ModeChangeRolledBack,
    Refused,
    ServerModeError,
    StoreError,
    SwitchInProgress,
    UnknownCategory,
)
from .gate import Gate, Ticket
from .machine import TRANSITIONS, ModeMachine, TimeoutPolicy, Transition, Trigger
from .modes import Mode, State, parse_mode
from .policy import CONTEXT_SERVICES, SERVERMODE_CATEGORIES, AdmissionPolicy, CategoryRule
from .records import Outcome, PersistedState, TransitionRecord
from .store import InMemoryStore, Store

__all__ = [
    "AUDIT_EVENT",
    "AUDIT_LOGGER",
    "CONTEXT_SERVICES",
    "MAX_DRAIN_TIMEOUT",
    "SERVERMODE_CATEGORIES",
    "TRANSITIONS",
    "AdmissionPolicy",
    "AuditLog",
    "CategoryRule",
    "Gate",
    "InMemoryStore",
    "InvalidMode",
    "Mode",
    "ModeChangeCancelled",
    "ModeChangeFailed",
    "ModeChangeInterrupted",
    "ModeChangeRolledBack",
    "ModeController",
    "ModeMachine",
    "ModeStatus",
    "Outcome",
    "PersistedState",
    "Refused",
    "ServerModeError",
    "State",
    "Store",
    "StoreError",
    "SwitchInProgress",
    "Ticket",
    "TimeoutPolicy",
    "Transition",
    "TransitionRecord",
    "Trigger",
    "UnknownCategory",
    "parse_mode",
]
