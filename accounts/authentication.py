"""JWT authentication that does not read the user row on every request.

simplejwt's `JWTAuthentication` loads the user by the token's id on every request:
one database round trip per API call, often the biggest share of a cheap one. With
JWT_USER_CACHE_SECONDS > 0 each process keeps the row it loaded for that long
(only an active user's; simplejwt refuses an inactive one), so a deactivated or
deleted user is refused again at most that many seconds later on every process.
0 (the default) reads the row every time, exactly as simplejwt does.

Every request gets its own `User` instance built from the kept values: a view
that changes `request.user` never changes another request's.
"""

import time
from typing import Any, cast

from django.conf import settings
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token

from accounts.models import User

_MAX_USERS = 10_000
_users: dict[str, tuple[float, dict[str, Any]]] = {}


class CachedJWTAuthentication(JWTAuthentication):
    # simplejwt annotates get_user with a TypeVar bound to nothing in its
    # signature; what it returns is AUTH_USER_MODEL's instance, our User.
    def get_user(self, validated_token: Token) -> User:  # type: ignore[override]  # see above
        ttl = settings.JWT_USER_CACHE_SECONDS
        if ttl <= 0:
            return cast(User, super().get_user(validated_token))
        key = str(validated_token.get(api_settings.USER_ID_CLAIM, ""))
        now = time.monotonic()
        hit = _users.get(key)
        if hit is not None and hit[0] > now:
            return User.from_db("default", list(hit[1]), list(hit[1].values()))
        user = cast(User, super().get_user(validated_token))
        if len(_users) >= _MAX_USERS:
            _users.clear()
        _users[key] = (
            now + ttl,
            {f.attname: getattr(user, f.attname) for f in User._meta.concrete_fields},
        )
        return user


class OptionalJWTAuthentication(CachedJWTAuthentication):
    """The caller of a valid access token, else anonymous (never a 401): for a
    public endpoint that acts on a caller it knows (logout) but must not be
    stopped by a stale or expired Authorization header."""

    def authenticate(self, request):
        try:
            return super().authenticate(request)
        except (InvalidToken, AuthenticationFailed):
            return None


class CachedJWTScheme(SimpleJWTScheme):
    """The OpenAPI security scheme: the same bearer JWT as simplejwt's."""

    target_class = CachedJWTAuthentication  # type: ignore[assignment]  # drf-spectacular takes the class or its dotted path
