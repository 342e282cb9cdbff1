"""Pure cryptography for Parley: bytes in, bytes out, no I/O."""
