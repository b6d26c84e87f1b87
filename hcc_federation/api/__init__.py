"""The REST API: Cornice services, the error envelope and the tweens around them."""

from __future__ import annotations

import ipaddress

from pyramid.tweens import INGRESS


def client_address(request) -> str:
    """The client's address; X-Forwarded-For is believed only from a configured proxy."""
    remote = request.remote_addr or "unknown"
    proxies = request.registry.hcc_settings.api.trusted_proxies
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded and remote in proxies:
        # the right-most address that is not one of our proxies is the one the proxy saw
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            if hop not in proxies:
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    break
    return remote[:45]


def includeme(config) -> None:
    config.include("cornice")
    from .errors import CodedRenderer

    # the renderer Cornice's services use by default: its errors get a code like ours
    config.add_renderer("cornicejson", CodedRenderer())
    config.add_request_method(client_address, "client_address", reify=True)
    config.add_tween("hcc_federation.api.tweens.body_limit_tween_factory")
    config.add_tween("hcc_federation.api.tweens.cors_tween_factory")
    config.add_tween("hcc_federation.api.tweens.no_store_tween_factory")
    # Above everything that reads the path or the query string (the body limit, the router, the
    # views), below CORS and no-store, which read neither, so that its 400 carries their headers.
    config.add_tween(
        "hcc_federation.api.tweens.url_encoding_tween_factory",
        under="hcc_federation.api.tweens.cors_tween_factory",
        over="hcc_federation.api.tweens.body_limit_tween_factory",
    )
    # outermost: a request for another host is refused before any tween or view sees it
    config.add_tween("hcc_federation.api.tweens.allowed_host_tween_factory", under=INGRESS)
    config.scan(".")
