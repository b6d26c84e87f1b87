"""WSGI entry for Apache mod_wsgi: ``WSGIScriptAlias / /path/to/hcc_federation/wsgi.py``.

The ini file is HCC_INI (default: production.ini beside the package). Secrets come from the
environment (SetEnv in the Apache configuration, passed on by mod_wsgi's WSGIPassEnv or
a wrapper), as with pserve.
"""

import os
from pathlib import Path

from pyramid.paster import get_app, setup_logging

INI = os.environ.get("HCC_INI", str(Path(__file__).resolve().parent.parent / "production.ini"))
setup_logging(INI)
application = get_app(INI, "main")
