"""API permissions tied to account roles."""

from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission
from rest_framework.request import Request


class IsServiceAccount(BasePermission):
    """Only payment-provider service accounts (`User.is_service`).

    An authenticated user without the role gets the same 404 as an unknown URL,
    so the provider API does not reveal itself; an anonymous caller gets 401,
    as everywhere else in the API.
    """

    def has_permission(self, request: Request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if not getattr(user, "is_service", False):
            raise NotFound()
        return True
