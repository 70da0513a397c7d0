"""nginx configuration for tests and benchmarks: a foreground nginx living in one directory."""

from __future__ import annotations

from pathlib import Path


def nginx_conf(
    tmp: Path | str,
    servers: str,
    *,
    worker_connections: int = 256,
    error_level: str = "info",
    extra_main: str = "",
    extra_http: str = "",
) -> str:
    """A complete nginx.conf whose pid, logs and temp paths are all under ``tmp``.

    ``servers`` holds the ``server { ... }`` blocks, written with single braces.
    """
    return f"""daemon off;
{extra_main}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log {error_level};
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
{extra_http}    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{servers}}}
"""
