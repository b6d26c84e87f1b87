"""hcc-federation: a REST gateway that acts for a person on several HPC clusters."""

from pyramid.config import Configurator


def main(global_config, **settings):
    """The WSGI application (PasteDeploy's app factory)."""
    # the ini PasteDeploy read (pserve, mod_wsgi's wsgi.py): .deployment checks who may read it
    settings.setdefault("hcc_ini_file", global_config.get("__file__"))
    with Configurator(settings=settings) as config:
        config.include(".settings")
        config.include(".deployment")
        config.include(".memory")
        config.include(".db")
        config.include(".auth")
        # before the features: .api includes Cornice, whose directives their views need, and its error
        # views override Cornice's only when Cornice is included under it (a sibling include conflicts)
        config.include(".api")
        config.include(".clusters")
        config.include(".jobs")
        config.include(".files")
        config.include(".notebooks")
        # last: the legacy routes translate onto the features above
        config.include(".legacy")
        config.include(".operations")
    return config.make_wsgi_app()
