from django.urls import re_path
from rest_framework.routers import SimpleRouter

from wallets.api.views import WalletOperationView, WalletViewSet

router = SimpleRouter()
router.register("wallets", WalletViewSet, basename="wallet")

urlpatterns = [
    # The classic contract has no trailing slash; accept both.
    re_path(
        r"^wallets/(?P<wallet_id>[^/]+)/operation/?$",
        WalletOperationView.as_view(),
        name="wallet-operation",
    ),
    *router.urls,
]
