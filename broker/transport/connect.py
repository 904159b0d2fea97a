"""Connections to RabbitMQ from settings: plain AMQP in development, AMQPS (or mutual TLS) in production.

TLS material comes from ``MASP_AMQP_CA_FILE`` / ``MASP_AMQP_CERT_FILE`` / ``MASP_AMQP_KEY_FILE``;
aiormq's own URL query (``?cafile=&certfile=&keyfile=``) keeps working when they are unset.
The context always verifies the server's certificate and name; it never falls back to plain.
"""

from __future__ import annotations

import ssl

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractRobustConnection

from broker.errors import ConfigurationError
from broker.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    files = (settings.amqp_ca_file, settings.amqp_cert_file, settings.amqp_key_file)
    if not settings.amqp_url.startswith("amqps://"):
        if any(files):
            raise ConfigurationError(
                "MASP_AMQP_CA_FILE, _CERT_FILE and _KEY_FILE need an amqps:// MASP_AMQP_URL")
        return None
    if not any(files):
        return None  # aiormq builds one from the URL query, or from the system's trusted CAs
    if settings.amqp_key_file and not settings.amqp_cert_file:
        raise ConfigurationError("MASP_AMQP_KEY_FILE is set without MASP_AMQP_CERT_FILE")
    try:
        context = ssl.create_default_context(
            cafile=str(settings.amqp_ca_file) if settings.amqp_ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if settings.amqp_cert_file:
            context.load_cert_chain(settings.amqp_cert_file, settings.amqp_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"AMQP TLS files could not be loaded ({type(exc).__name__}: "
                                 f"{getattr(exc, 'strerror', None) or exc})") from None
    return context


async def connect_robust(settings: Settings, timeout: float = 10) -> AbstractRobustConnection:
    """The long-lived, self-reconnecting connection of the broker workers and adapters."""
    return await aio_pika.connect_robust(settings.amqp_url, timeout=timeout,
                                         ssl_context=ssl_context(settings))


async def connect(settings: Settings, timeout: float = 10) -> AbstractConnection:
    """A short-lived connection for one CLI command."""
    return await aio_pika.connect(settings.amqp_url, timeout=timeout, ssl_context=ssl_context(settings))


def connection_user(connection: AbstractConnection) -> str | None:
    """The RabbitMQ user ``connection`` authenticated as, as its URL names it (None if it does not).

    What a publisher puts in the ``user_id`` property: RabbitMQ refuses any other value.
    """
    user = getattr(getattr(connection, "url", None), "user", None)
    return str(user) if user else None


__all__ = ["connect", "connect_robust", "connection_user", "ssl_context"]
