"""hcc-federation: a REST gateway that acts for a person on several HPC clusters."""

from pyramid.config import Configurator


def main(global_config, **settings):
    """The WSGI application (PasteDeploy's app factory)."""
    with Configurator(settings=settings) as config:
        config.include(".settings")
        config.include(".db")
        config.include(".auth")
        config.include(".routing")
        config.include(".files")
        config.include(".api")
    return config.make_wsgi_app()
