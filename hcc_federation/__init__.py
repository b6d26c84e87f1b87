"""hcc-federation: a REST gateway that acts for a person on several HPC clusters."""

from pyramid.config import Configurator


def main(global_config, **settings):
    """The WSGI application (PasteDeploy's app factory)."""
    with Configurator(settings=settings) as config:
        config.include(".settings")
        config.include(".memory")
        config.include(".db")
        config.include(".auth")
        config.include(".routing")
        # .api includes cornice (whose add_cornice_service the feature packages' scans need) and
        # overrides cornice's error views; including cornice before .api would conflict with those
        config.include(".api")
        config.include(".jobs")
        config.include(".files")
    return config.make_wsgi_app()
