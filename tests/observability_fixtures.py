"""Fixtures for observability tests: captured logs (all levels, libraries too) and spans.

Imported by the conftest of the observability test packages; both restore the process-wide
state (logging configuration, tracer provider) they change.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from broker import logs, telemetry


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Every log line, JSON, at DEBUG, libraries included, through the production processors."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level,
             {name: logging.getLogger(name).level for name in logs.LIBRARY_LOGGERS})
    buffer = io.StringIO()
    logs.configure(json=True, level="DEBUG", library_level="DEBUG", stream=buffer)
    try:
        yield buffer
    finally:
        structlog.reset_defaults()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with telemetry.use_provider(provider):
        yield exporter
    provider.shutdown()
