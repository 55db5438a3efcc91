"""Guests: the phones behind the edge (simulated, QEMU, Android) and the pool that hosts them."""
