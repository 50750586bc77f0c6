from django.urls import include, path

from bench.floor import floor_operation

urlpatterns = [
    path("bench/floor/<int:account>", floor_operation),
    path("", include("wallet_project.urls")),
]
