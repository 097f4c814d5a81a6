"""What a new password must be: long enough, not the username, not a common password."""

from __future__ import annotations

from chat_domain.common_passwords import COMMON_PASSWORDS
from chat_domain.entities import check_password
from chat_domain.errors import InvalidInput


def check_new_password(password: str, username: str) -> None:
    """Refuse (``InvalidInput``) a password a guesser would try first: outside 8..128
    characters, the username itself or containing it (any case), or one of the most
    common passwords (any case). ``username`` is the normalised one."""
    check_password(password)
    folded = password.casefold()
    if username and username.casefold() in folded:
        raise InvalidInput("password: must not contain the username")
    if folded in COMMON_PASSWORDS:
        raise InvalidInput("password: too common, it would be guessed first; choose another")
