"""Why a first connect failed, in a word a person can act on (`ConnectFailed.reason`).

aio-pika and aiormq report a refused login, an unknown vhost and a closed port with very
different exceptions, one of them (a vhost the broker refuses, answered with
`Connection.Close` where `Connection.OpenOk` was expected) only as
`Expected one of ['Connection.OpenOk'], got <Connection.Close object at 0x...>`. This turns
each into the AMQP reply code name or a short phrase, and says whether the broker refused
(retrying cannot help) or could not be reached.
"""

from __future__ import annotations

import socket
from typing import Literal

from aiormq import exceptions as amqp_errors

# What failed: the broker refused the login, refused the vhost, or did not answer.
Refusal = Literal["login", "vhost", "unreachable"]


def refusal_detail(exc: BaseException, reason: str) -> str:
    """The broker's refusal on one line for a log: its own text, or for a refused vhost
    (which aiormq reports as an unexpected frame) what it means."""
    if reason == "NOT_ALLOWED":
        return "NOT_ALLOWED (the vhost does not exist, or the user has no permissions on it)"
    return (str(exc).strip() or reason).splitlines()[0]


def connect_reason(exc: BaseException, timeout: float) -> tuple[Refusal, str]:
    """(what failed, its reason) for an exception of `aio_pika.connect`."""
    if isinstance(exc, amqp_errors.ProbableAuthenticationError | amqp_errors.AuthenticationError):
        text = str(exc.args[0]) if exc.args else ""
        code = text.split(" ", 1)[0]
        return "login", code if code.isupper() else "ACCESS_REFUSED"
    if isinstance(exc, amqp_errors.ConnectionNotAllowed):
        return "vhost", "NOT_ALLOWED"
    if isinstance(exc, amqp_errors.ProtocolSyntaxError) and "Connection.Close" in str(exc):
        # RabbitMQ closes the connection with 530 NOT_ALLOWED when the vhost does not
        # exist or the user has no permissions on it (aiormq keeps neither code nor text).
        return "vhost", "NOT_ALLOWED"
    # aiormq wraps the socket's error in its AMQPConnectionError (as __cause__).
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "unreachable", "connection refused"
        if isinstance(cause, socket.gaierror):
            return "unreachable", "unknown host"
        if isinstance(cause, TimeoutError):
            return "unreachable", f"no answer within {timeout:g}s"
        cause = cause.__cause__
    text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    return "unreachable", text
