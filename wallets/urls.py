from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from wallets.api.operations import WalletOperationView
from wallets.api.rates import RateListView, RateQuoteView
from wallets.api.views import WalletViewSet

router = SimpleRouter()
router.register("wallets", WalletViewSet, basename="wallet")

urlpatterns = [
    # The classic contract has no trailing slash; accept both.
    re_path(
        r"^wallets/(?P<wallet_id>[^/]+)/operation/?$",
        WalletOperationView.as_view(),
        name="wallet-operation",
    ),
    path("rates/", RateListView.as_view(), name="rate-list"),
    path("rates/quote/", RateQuoteView.as_view(), name="rate-quote"),
    *router.urls,
]
