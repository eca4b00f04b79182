"""The built-in preflight checks: one module per concern, each check a function over the Profile registered with
`migrate.preflight.registry.check`. Preflight imports this package through the `migrate.checks` entry point
(pyproject.toml); importing it registers every check of the modules below."""

from checks import capacity, cluster, compat, coverage, rights, usage

__all__ = ["capacity", "cluster", "compat", "coverage", "rights", "usage"]
