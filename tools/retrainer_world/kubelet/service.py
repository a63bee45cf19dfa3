"""The `kubernetes` Service for containers: kubernetes.default.svc:443 reaches the apiserver.

In-cluster clients find the apiserver two ways: client-go and the Python client read
KUBERNETES_SERVICE_HOST/PORT, Kopf's `login_with_service_account` dials the fixed name
https://kubernetes.default.svc (cluster DNS and the Service's ClusterIP on a real node). The
world has neither, so container mode takes the loopback address the world gives it (anything
in 127.0.0.0/8 answers on Linux without setup, so two worlds on one machine never collide on
port 443), forwards its port 443 to the apiserver byte for byte (TLS passes through; the
serving certificate names that address and kubernetes.default.svc) and maps the Service's
names to it in every container's /etc/hosts.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading

__all__ = ["SERVICE_NAMES", "SERVICE_PORT", "ServiceForwarder"]

SERVICE_PORT = 443
SERVICE_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
log = logging.getLogger("retrainer_world.kubelet")


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


class ServiceForwarder(threading.Thread):
    """Accepts on (address, 443) and pipes each connection to the apiserver."""

    def __init__(
        self,
        address: str,
        upstream: tuple[str, int],
        stop: threading.Event,
        listen_port: int = SERVICE_PORT,
    ) -> None:
        super().__init__(name="kubernetes-service", daemon=True)
        self.address, self.upstream, self.stop = address, upstream, stop
        self.listener = socket.create_server((address, listen_port))
        self.port: int = self.listener.getsockname()[1]
        self.listener.settimeout(1.0)

    def run(self) -> None:
        log.info("event=service_ready address=%s port=%s", self.address, self.port)
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()
        self.listener.close()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError as exc:
            log.warning("event=service_upstream_failed error=%r", exc)
            client.close()
            return
        upstream.settimeout(None)
        client.settimeout(None)
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()
        client.close()
        upstream.close()
