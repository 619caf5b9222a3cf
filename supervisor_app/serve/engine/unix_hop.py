"""A hop nginx talks to on a unix socket in smc's run directory: a thread of the smc process that
accepts nginx's connections and serves each on a thread of its own (nginx keeps a few alive).
router.py (the routing and session hop) and adapter_proxy.py (the adapter hop) are two of them."""

from __future__ import annotations

import os
import socket
import threading


class UnixHop:
    thread_name = "smc-hop"

    def __init__(self, path: str) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._stopped = False

    def start(self) -> None:
        self._sock.bind(self.path)
        os.chmod(self.path, 0o666)  # nginx's workers may run as another user
        self._sock.listen(256)
        threading.Thread(target=self._accept, name=self.thread_name, daemon=True).start()

    def stop(self) -> None:
        self._stopped = True
        try:
            self._sock.close()
        except OSError:
            pass

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        """Answer the requests of one nginx connection, then close it."""
        raise NotImplementedError


__all__ = ["UnixHop"]
