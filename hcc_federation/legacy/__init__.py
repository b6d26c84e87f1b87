"""The legacy hcc-jobs portal's API under /{cluster}/myapp/: a thin translation over the /api/v1 services.

The domain modules (paths, commands, parsers, service, notebooks) never import Pyramid; the
routes (views, with schemas) do.
"""

from __future__ import annotations


def includeme(config) -> None:
    """The legacy routes; the security policy reads MyAuthorization on these routes only."""
    from .views import SERVICES

    config.registry.hcc_myauthorization_routes = frozenset(service.name for service in SERVICES)
    config.scan(".views")
