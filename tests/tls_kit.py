"""Real TLS sessions for tests, run in memory: a client and a server ``ssl`` object joined by
memory BIOs, so a test gets the exact bytes a real TLS stack sends (and, with a key log, the
secrets tshark decrypts them with) without a socket."""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path


def contexts(cert: Path, key: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(client, server) contexts: the server presents ``cert``; the client checks nothing."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    return client, server


class MemoryTls:
    """A TLS session between ``client`` and ``server`` (contexts set up as the test wants,
    before this), its handshake done; every flight either side sent is in ``flights`` as
    (0 = client / 1 = server, bytes), in sending order."""

    def __init__(
        self, client: ssl.SSLContext, server: ssl.SSLContext, server_hostname: str | None
    ) -> None:
        self._bios = [ssl.MemoryBIO() for _ in range(4)]  # client in/out, server in/out
        self.client = client.wrap_bio(self._bios[0], self._bios[1], server_hostname=server_hostname)
        self.server = server.wrap_bio(self._bios[2], self._bios[3], server_side=True)
        self.flights: list[tuple[int, bytes]] = []
        for _ in range(6):
            for end in (self.client, self.server):
                with contextlib.suppress(ssl.SSLWantReadError):
                    end.do_handshake()
            self.pump()

    def pump(self) -> None:
        """Carry what each side wrote to the other, recording it as a flight."""
        bios = self._bios
        for side, out, into in ((0, bios[1], bios[2]), (1, bios[3], bios[0])):
            data = out.read()
            if data:
                self.flights.append((side, data))
                into.write(data)

    def exchange(self, request: bytes, response: bytes) -> None:
        """The client sends ``request``, the server reads it and answers ``response``, which
        the client reads (both checked)."""
        self.client.write(request)
        self.pump()
        assert self.server.read(1 << 16) == request
        self.server.write(response)
        self.pump()
        assert self.client.read(1 << 16) == response
