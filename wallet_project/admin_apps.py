from django.contrib.admin.apps import AdminConfig


class WalletAdminConfig(AdminConfig):
    """django.contrib.admin with the back-office site as `admin.site`, so every
    app's `@admin.register` lands on it. Kept apart from admin_site.py, which
    imports models (an AppConfig's module is imported before models are ready)."""

    default_site = "wallet_project.admin_site.WalletAdminSite"
