"""Print the test bed's endpoints.json from the variables that up.sh exports (with the argument
`hosting`: hosting.json, the hosted service's endpoints)."""

import json
import os
import sys

env = os.environ
state = env["S"]


def users() -> list[dict]:
    out = []
    for line in env["TESTBED_USERS"].split(";"):
        if not line.strip():
            continue
        name, uid, password, full, locked = line.split(":")
        out.append(
            {
                "name": name,
                "uid": int(uid),
                "password": password,
                "cn": full,
                "locked": locked == "1",
                "dn": f"uid={name},ou=People,{env['LDAP_BASE']}",
                "key": f"{state}/keys/{name}_ed25519",
            }
        )
    return out


def clusters() -> dict:
    out = {}
    for name in env["CLUSTERS"].split():
        out[name] = {
            "ssh_host": "127.0.0.1",
            "ssh_port": int(env[f"{name.upper()}_SSH_PORT"]),
            "known_hosts": f"{state}/ssh/{name}/known_hosts",
            "slurm_conf": f"{state}/etc/slurm-{name}/slurm.conf",
            "node": f"{name}-n1",
            "partition": "debug",
            "account": "research",
            "sshd_pidfile": f"{state}/run/sshd-{name}.pid",
        }
    return out


def hosting() -> dict:
    """The hosted service: Apache mod_wsgi (up.sh) and the replicas behind HAProxy (scripts/replicas.sh)."""
    mysql = f"{env['SVC_DB_USER']}:{env['SVC_DB_PASS']}@127.0.0.1:{env['MYSQL_PORT']}"
    return {
        "ini": f"{state}/hcc/service.ini",
        "venv": env["TESTBED_SERVICE_VENV"],
        "user": env["SERVICE_USER"],
        "auth_secret": env["HOSTED_AUTH_SECRET"],
        "tls_ca": f"{state}/tls/server.crt",
        "apache": {
            "url": f"https://127.0.0.1:{env['APACHE_PORT']}",
            "database_url": f"mysql+mysqldb://{mysql}/{env['APACHE_DB']}?charset=utf8mb4",
            "pidfile": f"{state}/run/apache2.pid",
        },
        "replicas": {
            "url": f"http://127.0.0.1:{env['HAPROXY_PORT']}",
            "database_url": f"mysql+mysqldb://{mysql}/{env['REPLICAS_DB']}?charset=utf8mb4",
            "replicas": [
                {"url": f"http://127.0.0.1:{port}", "pidfile": f"{state}/run/replica-{port}.pid"}
                for port in env["REPLICA_PORTS"].split()
            ],
        },
    }


if sys.argv[1:] == ["hosting"]:
    print(json.dumps(hosting(), indent=2))
    sys.exit(0)

base = env["LDAP_BASE"]
print(
    json.dumps(
        {
            "state_dir": state,
            "mysql": {
                "host": "127.0.0.1",
                "port": int(env["MYSQL_PORT"]),
                "database": env["SVC_DB"],
                "user": env["SVC_DB_USER"],
                "password": env["SVC_DB_PASS"],
                "url": (
                    f"mysql+mysqldb://{env['SVC_DB_USER']}:{env['SVC_DB_PASS']}"
                    f"@127.0.0.1:{env['MYSQL_PORT']}/{env['SVC_DB']}?charset=utf8mb4"
                ),
            },
            "ldap": {
                "uri": f"ldap://127.0.0.1:{env['LDAP_PORT']}",
                "base": base,
                "people": f"ou=People,{base}",
                "groups": f"ou=Groups,{base}",
                "teams": f"ou=Teams,{base}",
                "admin_dn": f"cn=admin,{base}",
                "admin_password": env["LDAP_ADMIN_PASS"],
                "bind_dn": f"cn=readonly,{base}",
                "bind_password": env["LDAP_READONLY_PASS"],
                "slapd_pidfile": f"{state}/run/slapd.pid",
            },
            "ssh_user_ca": {"private_key": f"{state}/ca/user_ca", "public_key": f"{state}/ca/user_ca.pub"},
            "slurmdbd": {"host": "127.0.0.1", "port": int(env["SLURMDBD_PORT"])},
            "jupyter": {
                "venv": env["TESTBED_JUPYTER_VENV"],
                "jupyter": f"{env['TESTBED_JUPYTER_VENV']}/bin/jupyter",
                "port_range": [int(env["JUPYTER_PORT_LO"]), int(env["JUPYTER_PORT_HI"])],
            },
            "users": users(),
            "clusters": clusters(),
        },
        indent=2,
    )
)
