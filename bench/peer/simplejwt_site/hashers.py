"""Argon2id at Latchkey's default cost, so both servers pay the same per hash."""

from django.contrib.auth.hashers import Argon2PasswordHasher


class LatchkeyCostArgon2PasswordHasher(Argon2PasswordHasher):
    """Django's Argon2id hasher (m=100 MiB, t=2, p=8 by default) at m=19456 KiB, t=2, p=1."""

    time_cost = 2
    memory_cost = 19456
    parallelism = 1
