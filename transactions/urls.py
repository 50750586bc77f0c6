from django.urls import path

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
]
