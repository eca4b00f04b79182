"""migrate: the Redis-to-Valkey migration toolkit (library first; the CLI is `migrate.cli`)."""

__version__ = "0.1.0"
