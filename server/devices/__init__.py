"""Devices and the CA that certifies their keys (seed 000)."""
