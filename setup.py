"""hcc-federation: a REST gateway that acts for a person on several HPC clusters."""

from setuptools import find_packages, setup

requires = [
    # pyramid 2.1 and cornice 6.1 import pkg_resources, which setuptools 82 removed
    "setuptools<82",
    "pyramid>=2.0,<3",
    "pyramid_tm>=2.5,<3",
    "plaster_pastedeploy>=1.0",
    "waitress>=3.0,<4",
    "cornice>=6.1,<7",
    "colander>=2.0,<3",
    "pyramid_ldap3>=0.5,<0.6",
    "ldap3>=2.9,<3",
    # the ppolicy response control is decoded by a schema (auth/directory.py); ldap3 depends on it too
    "pyasn1>=0.4.8,<0.7",
    # the streaming multipart/form-data parser of uploads (files/upload.py)
    "multipart>=2.0,<3",
    "SQLAlchemy>=2.0,<2.2",
    "zope.sqlalchemy>=3.1",
    "transaction>=4.0",
    "alembic>=1.13,<2",
    "mysqlclient>=2.2,<3",
    "paramiko>=5.1,<5.2",  # the minor version remote/paramiko_compat.py was checked against
    "cryptography>=42",
]

tests_require = [
    "pytest>=8,<10",
    "pytest-timeout>=2.3",
    "WebTest>=3.0,<4",
    "ruff>=0.6",
    # fuzzing from the OpenAPI document (tests/functional/test_fuzz.py)
    "schemathesis>=4.3,<5",
    # every functional test response is checked against the served OpenAPI document
    "openapi-core>=0.23,<0.24",
    "jsonschema>=4.18,<5",
]

setup(
    name="hcc-federation",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.11",
    packages=find_packages(exclude=["tests", "tests.*"]),
    include_package_data=True,
    zip_safe=False,
    install_requires=requires,
    extras_require={"test": tests_require},
    entry_points={
        "paste.app_factory": ["main = hcc_federation:main"],
        "console_scripts": [
            "hcc-cleanup = hcc_federation.scripts.cleanup:main",
            "hcc-check = hcc_federation.scripts.check:main",
        ],
    },
)
