from tests.observability_fixtures import log_output, spans  # noqa: F401  (fixtures)
