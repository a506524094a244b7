"""Transitional: the names scheduler/node.py and scheduler/cluster.py imported from here before
the device's client, server and wire were split (device_client.py, device_server.py,
device_wire.py, device_shm.py). Owns nothing; goes once those callers import device_client."""

from __future__ import annotations

from .device_client import _CLIENTS, client, shutdown_all

__all__ = ["client", "shutdown_all", "_CLIENTS"]
