from django.urls import path

from fees.api.views import WalletFeeChargeListView

urlpatterns = [
    path(
        "wallets/<str:wallet_id>/fees/",
        WalletFeeChargeListView.as_view(),
        name="wallet-fees",
    ),
]
