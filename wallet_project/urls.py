from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_replace
from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from wallet_project import health

# Swagger UI and ReDoc style their widgets with inline styles (a nonce in style-src
# would disable 'unsafe-inline', so it is replaced, not extended) and ReDoc runs a
# worker from a blob: URL; their scripts still need the page's nonce.
docs_page = csp_replace(
    {"style-src": [SELF, UNSAFE_INLINE], "worker-src": [SELF, "blob:"]}
)

# The busiest first: Django tries the includes in order, and every include that
# does not match costs a walk of its patterns (their prefixes do not overlap, so
# the order changes nothing else).
api_v1 = [
    path("", include("wallets.urls")),
    path("", include("transactions.urls")),
    path("", include("accounts.urls")),
    path("", include("fees.urls")),
]

urlpatterns = [
    # Probes (JSON, no auth); HealthCheckMiddleware answers them before host checks.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/docs/",
        docs_page(SpectacularSwaggerView.as_view(url_name="schema")),
        name="swagger-ui",
    ),
    path(
        "api/redoc/",
        docs_page(SpectacularRedocView.as_view(url_name="schema")),
        name="redoc",
    ),
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += staticfiles_urlpatterns()
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)

handler400 = "wallet_project.errors.json_400"
handler403 = "wallet_project.errors.json_403"
handler404 = "wallet_project.errors.json_404"
handler500 = "wallet_project.errors.json_500"
