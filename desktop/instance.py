"""The single-instance channel's address and messages, without Qt: the app and the tiny launcher share it."""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
import stat
import sys
import tempfile
from pathlib import Path

SEND_TIMEOUT_S = 0.5
SOCKET_PATH_MAX = 100  # bytes: sun_path holds 104 (macOS) to 108 (Linux)


def socket_address(data_dir: Path | str) -> str:
    """The socket for this user and Sift home (so SIFT_HOME test runs never meet); "" if none is safe.

    On Windows a named pipe, private to the session. Elsewhere a path in a folder only this
    user can write to: a bare name would be a file in /tmp that another user could make
    first, keeping Sift from starting (or, once, from finding itself).
    """
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    digest = hashlib.blake2b(f"{user}\0{data_dir}".encode(), digest_size=8).hexdigest()
    if sys.platform == "win32":
        return f"sift-{digest}"
    for folder in private_socket_folders(data_dir):
        candidate = os.path.join(folder, f"sift-{digest}.sock")
        if len(os.fsencode(candidate)) <= SOCKET_PATH_MAX:
            return candidate
    return ""


def private_socket_folders(data_dir: Path | str) -> list[str]:
    """Folders only this user may write to, best first: the session's runtime folder, Sift's data
    folder, then one of our own in the temporary folder (made 0700, refused if someone else's)."""
    candidates = [os.environ.get("XDG_RUNTIME_DIR", ""), os.fspath(data_dir)]
    if hasattr(os, "getuid"):
        own = os.path.join(tempfile.gettempdir(), f"sift-{os.getuid()}")
        try:
            os.mkdir(own, 0o700)
        except FileExistsError:
            pass
        except OSError:
            own = ""
        candidates.append(own)
    return [c for c in candidates if c and _private_folder(c)]


def _private_folder(folder: str) -> bool:
    try:
        info = os.lstat(folder)
    except OSError:
        return False
    mine = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    return stat.S_ISDIR(info.st_mode) and mine and not info.st_mode & 0o077


def send(address: str, message: str, *, timeout_s: float = SEND_TIMEOUT_S) -> bool:
    """Hand `message` to the Sift listening at `address`; False when none is there."""
    if not address:
        return False
    data = message.encode() + b"\n"
    if sys.platform == "win32":
        try:
            with open(rf"\\.\pipe\{address}", "wb", buffering=0) as pipe:
                pipe.write(data)
            return True
        except OSError:
            return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(address)
            sock.sendall(data)
        except OSError:  # no socket file, or one a crashed Sift left behind
            return False
    return True
