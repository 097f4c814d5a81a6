"""Which tokens this process accepts (``CHAT_AUTH_MODE``), built from the settings."""

from __future__ import annotations

from chat_adapters.security.app_tokens import (
    KEY_SET_ALGORITHMS,
    SECRET_ALGORITHMS,
    JwtAppTokenVerifier,
    KeySet,
    SharedSecret,
    SigningKeys,
    key_set_from_file,
    key_set_from_url,
)
from chat_bootstrap.settings import Settings
from chat_domain.ports.security import AppTokenVerifier
from chat_domain.ports.system import Clock


def app_token_verifier(settings: Settings, clock: Clock) -> AppTokenVerifier | None:
    """The checker of the app's tokens; None when only our accounts are accepted."""
    if settings.auth_mode == "accounts":
        return None
    keys: SigningKeys
    remember_seconds: float | None = None  # a shared secret is never withdrawn
    if settings.app_token_secret is not None:
        keys = SharedSecret(settings.app_token_secret.get_secret_value())
        algorithms = SECRET_ALGORITHMS
    else:
        load = (
            key_set_from_url(settings.app_jwks_url)
            if settings.app_jwks_url
            else key_set_from_file(settings.app_jwks_file or "")
        )
        keys = KeySet(
            load,
            clock,
            cache_seconds=settings.app_jwks_cache_seconds,
            min_refresh_seconds=settings.app_jwks_min_refresh_seconds,
        )
        algorithms = KEY_SET_ALGORITHMS
        remember_seconds = settings.app_jwks_cache_seconds
    return JwtAppTokenVerifier(
        keys,
        algorithms,
        issuer=settings.app_token_issuer or "",
        audience=settings.app_token_audience or "",
        clock=clock,
        remember_seconds=remember_seconds,
        leeway_seconds=settings.app_token_leeway_seconds,
        name_claim=settings.app_token_name_claim,
    )
