import pytest
from django.db import connection


@pytest.mark.django_db
def test_unknown_urls_are_json_404(client):
    response = client.get("/api/v1/nothing/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


@pytest.mark.django_db
def test_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/wallets/{wallet_id}/operation/" in paths
    assert "/api/v1/auth/token/" in paths
    assert client.get("/api/docs/").status_code == 200
    assert client.get("/api/redoc/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_unreachable_database_is_a_503_json_body(auth_api, wallet):
    """The database really goes away: the connection points at a closed port."""
    url = f"/api/v1/wallets/{wallet.id}/"
    assert auth_api.get(url).status_code == 200
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["PORT"] = "1"
    try:
        response = auth_api.get(url)
        assert response.status_code == 503
        assert response.json()["code"] == "service_unavailable"
        assert response["Retry-After"]
    finally:
        connection.close()
        connection.settings_dict.update(saved)
    assert auth_api.get(url).status_code == 200


@pytest.fixture
def refused_by_the_database(monkeypatch):
    """The profile service runs a statement PostgreSQL refuses with a data
    exception (SQLSTATE class 22): a django.db.DataError inside an API view."""

    def refused(**kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT 'not a number'::int")

    monkeypatch.setattr("accounts.services.user_profile_update", refused)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "detail"),
    [
        ("en", "A value in the request is out of range or not valid."),
        ("ru", "Значение в запросе вне допустимого диапазона или некорректно."),
    ],
)
def test_a_value_the_database_refuses_is_a_400_not_a_500(
    auth_api, refused_by_the_database, caplog, language, detail
):
    response = auth_api.patch(
        "/api/v1/users/me/",
        {"first_name": "Dana"},
        format="json",
        HTTP_ACCEPT_LANGUAGE=language,
    )
    assert response.status_code == 400
    assert response.json() == {"detail": detail, "code": "invalid_input"}
    assert not [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info]
