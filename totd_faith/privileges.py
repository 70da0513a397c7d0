"""Dropping root after every listener is bound (``service.user``).

Root is needed only to bind ports below 1024 and to change the host (AnyIP
routes with ``relay.manage_routes``, the nftables table of all-ports mode).
Serving needs nothing: upstream DNS sockets, relay backend connections and
UDP replies (IPV6_FREEBIND needs no capability) are ordinary sockets.  So
once the services have started, :func:`totd_faith.runtime.serve_until_signalled`
switches to ``service.user`` -- the one place that does it, for ``dns``,
``relay`` and ``serve`` alike.  One capability, CAP_NET_ADMIN, is kept only
when the relay changes the host: to undo those changes at stop (``ip`` and
``nft`` inherit it as an ambient capability) and to open transparent sockets
in all-ports mode.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import grp
import os
import pwd

from totd_faith.errors import OperatorError

CAP_NET_ADMIN = 12
_PR_SET_KEEPCAPS = 8
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_RAISE = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _keep_only(capability: int) -> None:
    libc = _libc()
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    mask = 1 << capability
    data[0].effective = data[0].permitted = data[0].inheritable = mask
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OperatorError(f"capset: {os.strerror(ctypes.get_errno())}")
    if libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, capability, 0, 0) != 0:
        raise OperatorError(f"prctl(PR_CAP_AMBIENT): {os.strerror(ctypes.get_errno())}")


def target_user(user: str) -> pwd.struct_passwd | None:
    """The account to switch to, or None when there is nothing to do.

    Raises OperatorError when ``user`` does not exist, or when we are neither
    root nor already ``user`` (we could not switch).  Called before anything is
    bound, so that a wrong ``service.user`` stops the start at once, and again
    by :func:`drop_privileges`.
    """
    if not user:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise OperatorError(
            f"service.user: no such user {user!r} (create it, e.g. with systemd-sysusers)"
        ) from None
    if os.geteuid() != 0:
        if os.geteuid() == entry.pw_uid:
            return None
        raise OperatorError(
            f"service.user = {user!r} needs totd-faith to start as root "
            f"(it runs as uid {os.geteuid()}); start it as root or leave service.user empty"
        )
    return entry


def drop_privileges(user: str, *, keep_net_admin: bool = False) -> str:
    """Become ``user`` (its primary group, no supplementary groups); say what was done."""
    entry = target_user(user)
    if entry is None:
        if not user:
            return "not dropping privileges (service.user is empty)"
        return f"already running as {user}, nothing to drop"
    if keep_net_admin:
        _libc().prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    if os.getuid() == 0 or os.geteuid() == 0:  # pragma: no cover - kernel guarantee
        raise OperatorError("could not drop root")
    group = grp.getgrgid(entry.pw_gid).gr_name
    done = f"dropped root: running as {user}:{group} (uid {entry.pw_uid}, gid {entry.pw_gid})"
    if keep_net_admin:
        _keep_only(CAP_NET_ADMIN)
        return (
            f"{done}, keeping only CAP_NET_ADMIN "
            "(to undo the relay's host changes at stop; transparent sockets)"
        )
    return f"{done}, no capabilities kept"
