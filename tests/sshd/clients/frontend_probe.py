"""Shared by the client scripts: whether a port answers on the frontend's loopback."""
import socket


def frontend_probe(port):
    """Whether 127.0.0.1:port answers here, on the frontend: a listener that landed in the
    sandbox must not ("refused")."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return "open"
    except OSError:
        return "refused"
