"""SQLAlchemy models of the memory database, at the newest schema revision.

The Alembic revisions in ``openpista/memory/migrations/versions`` are the source of truth for
the schema on disk; these models describe the result of applying all of them (``head``) and
are what the store queries. A change here needs a new revision beside it.

The models are written in SQLAlchemy's declarative style, but :class:`Base` turns each into
a plain :class:`~sqlalchemy.Table` (``Row.__table__``, its columns as ``Row.column``): the
store queries with SQLAlchemy Core only, and the ORM (~80 ms of every start) is never
imported. Declare columns with this module's :func:`mapped_column` and :data:`Mapped`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    # For the type checker, the ORM's: a column attribute is a column expression either way.
    from sqlalchemy.orm import Mapped as Mapped
    from sqlalchemy.orm import mapped_column as mapped_column
else:
    Mapped = Column
    """The annotation of a model's column (``id: Mapped[int] = mapped_column(...)``); the
    class attribute is the table's :class:`~sqlalchemy.Column`."""

    def mapped_column(*args: Any, **kwargs: Any) -> Column[Any]:
        """A column of a :class:`Base` model: :class:`~sqlalchemy.Column`'s arguments,
        named after the attribute it is assigned to."""
        return Column(*args, **kwargs)


# Longest session id and title accepted; the store checks them before writing so that
# SQLite (which ignores VARCHAR lengths) and PostgreSQL reject the same input.
SESSION_ID_MAX_LENGTH = 255
TITLE_MAX_LENGTH = 500
# Longest sender (person id) of a message.
SENDER_MAX_LENGTH = 255

# Alembic's bookkeeping table; named for openpista so that a PostgreSQL database shared with
# another Alembic-managed application keeps the two histories apart.
VERSION_TABLE = "openpista_schema_version"

# Constraint names that Alembic can refer to on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always read back timezone-aware, in UTC.

    PostgreSQL stores ``timestamptz``. SQLite has no time zones, so values are converted to
    UTC and stored naive (SQLAlchemy's fixed-width ISO text, which also sorts correctly),
    then marked as UTC again when read. Naive input is taken to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)  # noqa: S101  an invariant for mypy, not a check
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# The plain ``json`` type on PostgreSQL (not ``jsonb``) keeps the document as written: key
# order and number spelling survive, so a session reloads exactly as stored.
StoredJSON = JSON(none_as_null=True)

# 64-bit ids on PostgreSQL; SQLite only auto-increments a column declared INTEGER.
MessageId = BigInteger().with_variant(Integer(), "sqlite")


class Base:
    """Base of the memory tables: a subclass names ``__tablename__``, assigns
    :func:`mapped_column` columns and may give ``__table_args__`` (constraints and indexes,
    optionally ending with a dict of table options); it gets ``__table__`` in
    :attr:`metadata`, and its attributes become that table's columns."""

    metadata: ClassVar[MetaData] = MetaData(naming_convention=NAMING_CONVENTION)
    __tablename__: ClassVar[str]
    __table__: ClassVar[Table]
    __table_args__: ClassVar[tuple[Any, ...] | dict[str, Any]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        columns: dict[str, Column[Any]] = {}
        for key, value in vars(cls).items():
            # An ORM mapped_column() (a model not yet moved to this module's) carries one.
            column = getattr(value, "column", value)
            if isinstance(column, Column):
                column.key = key
                column.name = column.name or key
                columns[key] = column
        args = cls.__table_args__
        positional: tuple[Any, ...] = ()
        options: dict[str, Any] = {}
        if isinstance(args, dict):
            options = args
        elif args and isinstance(args[-1], dict):
            positional, options = args[:-1], args[-1]
        else:
            positional = args
        cls.__table__ = Table(
            cls.__tablename__, cls.metadata, *columns.values(), *positional, **options
        )
        for key in columns:
            setattr(cls, key, cls.__table__.c[key])

    @classmethod
    def __clause_element__(cls) -> Table:
        """The table, so that ``select(Row)`` and ``insert(Row)`` work as with the ORM."""
        return cls.__table__


class SessionRow(Base):
    """One conversation."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(SESSION_ID_MAX_LENGTH), primary_key=True)
    title: Mapped[str | None] = mapped_column(String(TITLE_MAX_LENGTH), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    __table_args__ = (Index("ix_sessions_updated_at", "updated_at"),)


class MessageRow(Base):
    """One message of a conversation; ``id`` gives the insertion order."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(MessageId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        String(SESSION_ID_MAX_LENGTH),
        ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
    )
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    content: Mapped[str] = mapped_column(Text(), nullable=False)
    # List of ToolCall dumps; NULL when the message has no tool calls.
    tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(StoredJSON, nullable=True)
    # One ToolResult dump; NULL except on ``tool`` messages.
    tool_result: Mapped[dict[str, Any] | None] = mapped_column(StoredJSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # The person (``telegram:123``) who wrote a user message; NULL for every other message
    # (and for messages stored before revision 0011).
    sender: Mapped[str | None] = mapped_column(String(SENDER_MAX_LENGTH), nullable=True)

    __table_args__ = (
        Index("ix_messages_session_id_id", "session_id", "id"),
        Index("ix_messages_sender", "sender"),
    )


# Longest channel id and tool name accepted (checked by the store, like session ids).
CHANNEL_ID_MAX_LENGTH = 255
TOOL_NAME_MAX_LENGTH = 255

# The values of ``tool_decisions.action`` and ``tool_decisions.decided_by``.
DECISION_ACTIONS = ("allow", "deny")
DECISION_SOURCES = ("policy", "user", "timeout")


class ChannelSessionRow(Base):
    """Which session a chat (channel id, e.g. ``telegram:42``) talks to."""

    __tablename__ = "channel_sessions"

    channel_id: Mapped[str] = mapped_column(String(CHANNEL_ID_MAX_LENGTH), primary_key=True)
    session_id: Mapped[str] = mapped_column(
        String(SESSION_ID_MAX_LENGTH),
        ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    __table_args__ = (Index("ix_channel_sessions_session_id", "session_id"),)


class ToolDecisionRow(Base):
    """The audit trail of the tool policy: one row per tool call that was allowed or denied,
    and who decided (the policy, the user, or nobody in time); ``id`` gives the order."""

    __tablename__ = "tool_decisions"

    id: Mapped[int] = mapped_column(MessageId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        String(SESSION_ID_MAX_LENGTH),
        ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
    )
    channel_id: Mapped[str] = mapped_column(String(CHANNEL_ID_MAX_LENGTH), nullable=False)
    tool: Mapped[str] = mapped_column(String(TOOL_NAME_MAX_LENGTH), nullable=False)
    arguments: Mapped[dict[str, Any]] = mapped_column(StoredJSON, nullable=False)
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    decided_by: Mapped[str] = mapped_column(String(16), nullable=False)
    detail: Mapped[str] = mapped_column(Text(), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    __table_args__ = (
        CheckConstraint("action IN ('allow', 'deny')", name="action"),
        CheckConstraint("decided_by IN ('policy', 'user', 'timeout')", name="decided_by"),
        Index("ix_tool_decisions_session_id_id", "session_id", "id"),
    )
