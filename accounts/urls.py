from django.urls import path

from accounts.api import views

urlpatterns = [
    path("auth/signup/", views.SignupView.as_view(), name="signup"),
    path(
        "auth/signup/confirm/", views.SignupConfirmView.as_view(), name="signup-confirm"
    ),
    path("auth/signup/resend/", views.SignupResendView.as_view(), name="signup-resend"),
    path("auth/token/", views.TokenObtainView.as_view(), name="token-obtain"),
    path("auth/token/refresh/", views.TokenRefreshView.as_view(), name="token-refresh"),
    path("auth/logout/", views.LogoutView.as_view(), name="logout"),
    path(
        "auth/password-reset/", views.PasswordResetView.as_view(), name="password-reset"
    ),
    path(
        "auth/password-reset/confirm/",
        views.PasswordResetConfirmView.as_view(),
        name="password-reset-confirm",
    ),
    path("users/me/", views.MeView.as_view(), name="me"),
    path(
        "users/me/password/", views.PasswordChangeView.as_view(), name="password-change"
    ),
    path(
        "users/me/password/confirm/",
        views.PasswordChangeConfirmView.as_view(),
        name="password-change-confirm",
    ),
]
