"""Alembic environment: the database URL comes from the same hcc.* settings as the service."""

import os

from alembic import context
from pyramid.paster import get_appsettings, setup_logging

from hcc_federation.db import make_engine
from hcc_federation.models import Base
from hcc_federation.settings import DatabaseSettings, _Reader, parse_database

config = context.config


def database_settings() -> DatabaseSettings:
    # tests and scripts hand a URL in directly; `alembic -c production.ini` reads [app:main]
    url = config.attributes.get("hcc_database_url")
    if url:
        return DatabaseSettings(url=url)
    setup_logging(config.config_file_name)
    return parse_database(_Reader(get_appsettings(config.config_file_name), os.environ))


def run_migrations_offline() -> None:
    context.configure(url=database_settings().url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(database_settings())
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=Base.metadata)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
