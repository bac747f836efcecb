"""The guest end of the byte stream to the host: stdio pipes or a virtio-serial port.

Both are used non-blocking so the agent's loop never stalls on the host.
A virtio-serial port behaves unlike a pipe when nobody is connected on the
host side: ``poll`` reports POLLHUP, ``read`` returns 0 (EOF) at once and
``write`` fails with EAGAIN, and all of that ends when the host connects. So
for a port "EOF" means "not connected yet / any more" and the agent probes
again later, while for stdio EOF means the host process is gone.
"""

from __future__ import annotations

import errno
import os
import select
from collections import deque

VIRTIO_PORTS = "/sys/class/virtio-ports"
OUTBOX_LIMIT = 1024 * 1024  # queued bytes before old samples are dropped
_GONE = {errno.EPIPE, errno.EIO, errno.ENODEV, errno.ECONNRESET, errno.ENXIO}


class PeerGone(Exception):
    """The other end is not there (EOF, hang-up or a broken pipe)."""


def find_port(name: str, root: str = VIRTIO_PORTS, dev: str = "/dev") -> str | None:
    """The /dev node of the virtio-serial port called ``name`` (e.g. /dev/vport0p1)."""
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return None
    for entry in entries:
        try:
            with open(os.path.join(root, entry, "name")) as f:
                if f.read().strip() == name:
                    return os.path.join(dev, entry)
        except OSError:
            continue
    return None


class Channel:
    """A non-blocking byte stream; ``rfd`` and ``wfd`` may be the same descriptor."""

    def __init__(self, rfd: int, wfd: int, *, reconnects: bool) -> None:
        self.rfd = rfd
        self.wfd = wfd
        self.reconnects = reconnects  # a port: EOF is "host not connected", not the end
        for fd in {rfd, wfd}:
            os.set_blocking(fd, False)

    @classmethod
    def stdio(cls) -> Channel:
        return cls(0, 1, reconnects=False)

    @classmethod
    def port(cls, path: str) -> Channel:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        return cls(fd, fd, reconnects=True)

    def read(self, max_bytes: int = 65536) -> bytes | None:
        """Bytes from the host, or None if there are none right now; raises PeerGone."""
        try:
            data = os.read(self.rfd, max_bytes)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno in _GONE:
                raise PeerGone(os.strerror(exc.errno or 0)) from None
            raise
        if not data:
            raise PeerGone("end of file")
        return data

    def write(self, data: bytes) -> int:
        """Write what fits now; raises PeerGone."""
        try:
            return os.write(self.wfd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            if exc.errno in _GONE:
                raise PeerGone(os.strerror(exc.errno or 0)) from None
            raise

    def peer_present(self) -> bool:
        """For a port: is the host connected (no POLLHUP)? Pipes are present until EOF."""
        if not self.reconnects:
            return True
        poller = select.poll()
        poller.register(self.rfd, select.POLLIN | select.POLLOUT)
        events = poller.poll(0)
        return not any(ev & (select.POLLHUP | select.POLLERR) for _, ev in events)

    def close(self) -> None:
        for fd in {self.rfd, self.wfd}:
            if fd > 2:
                os.close(fd)


class Outbox:
    """Encoded lines waiting for the host, bounded by dropping the oldest samples.

    When the host stops reading (between phases it may not read at all) the
    port blocks; samples are the only messages that may be lost, so they go
    first and the rest (results, errors) always get through.
    """

    def __init__(self, limit: int = OUTBOX_LIMIT) -> None:
        self._limit = limit
        self._lines: deque[tuple[bytes, bool]] = deque()
        self._bytes = 0
        self._partial = b""  # the unwritten rest of a line already started
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._lines) + (1 if self._partial else 0)

    def push(self, line: bytes, *, droppable: bool = False) -> None:
        self._lines.append((line, droppable))
        self._bytes += len(line)
        if self._bytes > self._limit:
            kept: deque[tuple[bytes, bool]] = deque()
            for item in self._lines:
                if item[1] and self._bytes > self._limit:
                    self._bytes -= len(item[0])
                    self.dropped += 1
                else:
                    kept.append(item)
            self._lines = kept

    def pending_lines(self) -> list[bytes]:
        """Whole lines not yet started (for inspection in tests)."""
        return [line for line, _ in self._lines]

    def clear(self) -> None:
        self._lines.clear()
        self._bytes = 0
        self._partial = b""

    def flush(self, channel: Channel) -> None:
        """Write as much as the channel takes without blocking; raises PeerGone."""
        while self._partial or self._lines:
            if not self._partial:
                line, _ = self._lines.popleft()
                self._bytes -= len(line)
                self._partial = line
            written = channel.write(self._partial)
            self._partial = self._partial[written:]
            if self._partial:
                return
