"""JWT signing-key rotation: old keys that still verify.

simplejwt verifies with one key (its TOKEN_BACKEND_CLASS setting is gone), so
rotating JWT_SIGNING_KEY would refuse every token signed with the old one: every
refresh token too, i.e. everyone logged out. With JWT_SIGNING_KEY_FALLBACKS set,
`install()` (AccountsConfig.ready) replaces simplejwt's one backend with one that
signs with JWT_SIGNING_KEY and, when a token's signature does not match it, tries
each old key in turn. New tokens (a refresh's rotation included) carry the new key.
Without fallbacks simplejwt's own backend stays in place, unchanged.
"""

from typing import Any

from django.conf import settings
from rest_framework_simplejwt import state
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import (
    TokenBackendError,
    TokenBackendExpiredToken,
)
from rest_framework_simplejwt.settings import api_settings


def _backend(key: str, cls: type[TokenBackend] = TokenBackend, **extra) -> Any:
    return cls(
        api_settings.ALGORITHM,
        key,
        api_settings.VERIFYING_KEY,
        api_settings.AUDIENCE,
        api_settings.ISSUER,
        api_settings.JWK_URL,
        api_settings.LEEWAY,
        api_settings.JSON_ENCODER,
        **extra,
    )


class FallbackTokenBackend(TokenBackend):
    def __init__(self, *args: Any, fallback_keys: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fallbacks = [_backend(key) for key in fallback_keys]

    def decode(self, token: Any, verify: bool = True) -> dict[str, Any]:
        try:
            return super().decode(token, verify=verify)
        except TokenBackendExpiredToken:
            raise  # its signature matched: expired is the answer
        except TokenBackendError as refused:
            if not verify:
                raise
            for fallback in self._fallbacks:
                try:
                    return fallback.decode(token, verify=True)
                except TokenBackendExpiredToken:
                    raise
                except TokenBackendError:
                    continue
            raise refused from None


def install() -> None:
    if settings.JWT_SIGNING_KEY_FALLBACKS:
        state.token_backend = _backend(
            api_settings.SIGNING_KEY,
            FallbackTokenBackend,
            fallback_keys=settings.JWT_SIGNING_KEY_FALLBACKS,
        )
