"""The kernel a submitted notebook is graded in: ipykernel, started after limits are put on its process.

``python -m minivdm.course.grading_kernel --memory-bytes N --file-bytes N -f CONNECTION_FILE``

Before ipykernel starts (so before any of the student's code runs), it

- caps the address space (``RLIMIT_AS``): an allocation past the cap fails inside the cell with
  ``MemoryError`` / "can't allocate memory", and the kernel lives on;
- caps the size of any one file the kernel writes (``RLIMIT_FSIZE``) and disables core dumps;
- refuses network connections from Python: ``socket.connect`` to anything but a Unix socket raises
  ``NetworkDisabled``, and so do name lookups of hosts other than localhost.

What this is not: a security boundary. The limits are the process's own soft and hard limits (a process
running as root can raise them again), the network guard is a patch of Python's ``socket`` module (code
can undo it, and a subprocess such as ``curl`` does not see it), and the kernel can read and write any
file its user can. The boundary is a container; README's "Instructors" section shows how to run the
grader in one.
"""

from __future__ import annotations

import resource
import socket
import sys

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", ""}


class NetworkDisabled(PermissionError):
    """Raised by any network connection attempted while a notebook is graded."""


def _refuse(target) -> None:
    raise NetworkDisabled(f"the network is disabled while notebooks are graded (tried to reach {target!r}): "
                          f"an exercise needs no download, everything it uses ships with minivdm")


def refuse_network() -> None:
    """Make Python's sockets refuse every connection but Unix sockets, and name lookups but localhost."""
    connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def guarded_connect(self, address):
        if self.family != getattr(socket, "AF_UNIX", None):
            _refuse(address)
        return connect(self, address)

    def guarded_connect_ex(self, address):
        if self.family != getattr(socket, "AF_UNIX", None):
            _refuse(address)
        return connect_ex(self, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else (host or "")
        if name not in LOCAL_HOSTS:
            _refuse(name)
        return getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex = guarded_connect, guarded_connect_ex
    socket.getaddrinfo = guarded_getaddrinfo


def apply_limits(memory_bytes: int, file_bytes: int) -> None:
    """Cap this process's address space and written file size (0 leaves one uncapped); no core dumps."""
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    if file_bytes:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _take_option(argv: list[str], name: str) -> int:
    if name not in argv:
        return 0
    index = argv.index(name)
    value = int(argv[index + 1])
    del argv[index: index + 2]
    return value


def main(argv: list[str]) -> None:
    argv = list(argv)
    memory_bytes = _take_option(argv, "--memory-bytes")
    file_bytes = _take_option(argv, "--file-bytes")
    apply_limits(memory_bytes, file_bytes)
    refuse_network()
    from ipykernel import kernelapp

    sys.argv = [sys.argv[0], *argv]
    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main(sys.argv[1:])
