from django.urls import path

from transactions.api.payouts import (
    PayoutCancelView,
    PayoutDetailView,
    ServicePayoutDetailView,
    ServicePayoutListView,
    WalletPayoutView,
)
from transactions.api.topups import (
    ServiceTopUpDetailView,
    ServiceTopUpListView,
    WalletTopUpView,
)
from transactions.api.transfers import TransferView
from transactions.api.views import (
    EntryListView,
    TransactionDetailView,
    WalletEntryListView,
)

urlpatterns = [
    path(
        "wallets/<str:wallet_id>/transactions/",
        WalletEntryListView.as_view(),
        name="wallet-transactions",
    ),
    path("transactions/", EntryListView.as_view(), name="transaction-list"),
    path(
        "transactions/<str:transaction_id>/",
        TransactionDetailView.as_view(),
        name="transaction-detail",
    ),
    path("transfers/", TransferView.as_view(), name="transfer-create"),
    # Top-ups: the owner's side, then the payment provider's (service accounts).
    path(
        "wallets/<str:wallet_id>/topups/",
        WalletTopUpView.as_view(),
        name="wallet-topups",
    ),
    path("service/topups/", ServiceTopUpListView.as_view(), name="service-topup-list"),
    path(
        "service/topups/<str:topup_id>/",
        ServiceTopUpDetailView.as_view(),
        name="service-topup-detail",
    ),
    # Payouts: the owner's side, then the payment provider's (service accounts).
    path(
        "wallets/<str:wallet_id>/payouts/",
        WalletPayoutView.as_view(),
        name="wallet-payouts",
    ),
    path("payouts/<str:payout_id>/", PayoutDetailView.as_view(), name="payout-detail"),
    path(
        "payouts/<str:payout_id>/cancel/",
        PayoutCancelView.as_view(),
        name="payout-cancel",
    ),
    path(
        "service/payouts/", ServicePayoutListView.as_view(), name="service-payout-list"
    ),
    path(
        "service/payouts/<str:payout_id>/",
        ServicePayoutDetailView.as_view(),
        name="service-payout-detail",
    ),
]
