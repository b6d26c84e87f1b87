"""Slurm jobs: the domain (validation, commands, parsers, client) and the jobs API (schemas, views)."""


def includeme(config) -> None:
    # The views are Cornice services on the API's shared parts, and Cornice's directives exist only
    # once .api has included it. Included from here (Pyramid includes a module once), .api comes first
    # whatever the order in main(); Cornice must stay included under .api, whose error views then
    # override Cornice's own (an include of Cornice from here would conflict with them).
    config.include("hcc_federation.api")
    config.scan(".views")
    config.scan(".output_views")
