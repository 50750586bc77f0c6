from django.urls import path

from transactions.api.events import EventListView
from transactions.api.payouts import (
    PayoutCancelView,
    PayoutDetailView,
    ServicePayoutDetailView,
    ServicePayoutListView,
    WalletPayoutView,
)
from transactions.api.statements import WalletBalanceView, WalletStatementView
from transactions.api.topups import (
    ServiceTopUpDetailView,
    ServiceTopUpListView,
    ServiceTopUpReversalView,
    WalletTopUpView,
)
from transactions.api.transfers import TransferView
from transactions.api.views import (
    EntryListView,
    TransactionDetailView,
    WalletEntryListView,
)
from transactions.api.webhooks import (
    WebhookEndpointDetailView,
    WebhookEndpointListView,
    WebhookEndpointRotateSecretView,
)

urlpatterns = [
    path(
        "wallets/<str:wallet_id>/transactions/",
        WalletEntryListView.as_view(),
        name="wallet-transactions",
    ),
    # Balances in the past and statements (transactions.api.statements).
    path(
        "wallets/<str:wallet_id>/balance/",
        WalletBalanceView.as_view(),
        name="wallet-balance",
    ),
    path(
        "wallets/<str:wallet_id>/statement/",
        WalletStatementView.as_view(),
        name="wallet-statement",
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
    path(
        "service/topups/<str:topup_id>/reversal/",
        ServiceTopUpReversalView.as_view(),
        name="service-topup-reversal",
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
    # Events and webhooks.
    path("events/", EventListView.as_view(), name="event-list"),
    path(
        "webhook-endpoints/",
        WebhookEndpointListView.as_view(),
        name="webhook-endpoint-list",
    ),
    path(
        "webhook-endpoints/<str:endpoint_id>/",
        WebhookEndpointDetailView.as_view(),
        name="webhook-endpoint-detail",
    ),
    path(
        "webhook-endpoints/<str:endpoint_id>/rotate-secret/",
        WebhookEndpointRotateSecretView.as_view(),
        name="webhook-endpoint-rotate-secret",
    ),
]
