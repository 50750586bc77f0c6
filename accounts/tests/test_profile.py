import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ME = "/api/v1/users/me/"


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def image_file(name="me.png", size=(64, 64), fmt="PNG") -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new("RGB", size, "teal").save(buffer, format=fmt)
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="image/png")


def test_the_profile_shows_the_user(auth_api, user):
    body = auth_api.get(ME).json()
    assert body["email"] == user.email
    assert body["first_name"] == user.first_name
    assert set(body) == {
        "id",
        "email",
        "phone_number",
        "first_name",
        "last_name",
        "profile_image",
        "date_joined",
    }


def test_names_and_phone_number_can_be_changed(auth_api, user):
    response = auth_api.patch(
        ME,
        {"first_name": "Dana", "last_name": "Ospan", "phone_number": "8 701 765 43 21"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["phone_number"] == "+77017654321"
    user.refresh_from_db()
    assert (user.first_name, user.last_name, user.phone_number) == (
        "Dana",
        "Ospan",
        "+77017654321",
    )


def test_a_patch_changes_only_what_it_names(auth_api, user):
    user.phone_number = "+77011234567"
    user.save()
    auth_api.patch(ME, {"first_name": "Dana"}, format="json")
    user.refresh_from_db()
    assert user.phone_number == "+77011234567"


@pytest.mark.parametrize("format", ["json", "multipart"])
def test_an_empty_patch_is_a_200_that_changes_nothing(auth_api, user, format):
    user.first_name, user.phone_number = "Dana", "+77011234567"
    user.save()
    before = auth_api.get(ME).json()
    response = auth_api.patch(ME, {}, format=format)
    assert response.status_code == 200, response.json()
    assert response.json() == before
    user.refresh_from_db()
    assert (user.first_name, user.phone_number) == ("Dana", "+77011234567")


@pytest.mark.parametrize("field", ["first_name", "last_name", "phone_number"])
@pytest.mark.parametrize("value", [-548, 7011234567, 1.5, False])
def test_a_name_or_phone_that_is_not_a_string_is_400(auth_api, user, field, value):
    """JSON numbers are not names: not quietly stored as their text."""
    before = getattr(user, field)
    response = auth_api.patch(ME, {field: value}, format="json")
    assert response.status_code == 400
    assert response.json() == {field: ["Not a valid string."]}
    user.refresh_from_db()
    assert getattr(user, field) == before


@pytest.mark.parametrize("empty", [None, ""])
def test_the_phone_number_can_be_removed(auth_api, user, empty):
    user.phone_number = "+77011234567"
    user.save()
    response = auth_api.patch(ME, {"phone_number": empty}, format="json")
    assert response.json()["phone_number"] is None


@pytest.mark.parametrize("phone", ["12345", "+7 000 000 00 00", "phone"])
def test_an_invalid_phone_number_is_a_400(auth_api, phone):
    response = auth_api.patch(ME, {"phone_number": phone}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "phone_number": ["Enter a valid phone number, e.g. +77011234567."]
    }


def test_someone_elses_phone_number_is_a_400(auth_api):
    UserFactory(phone_number="+77011234567")
    response = auth_api.patch(ME, {"phone_number": "+77011234567"}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "phone_number": ["A user with this phone number already exists."]
    }


def test_the_email_cannot_be_changed_here(auth_api, user):
    response = auth_api.patch(ME, {"email": "new@example.com"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"email": ["The email cannot be changed."]}
    user.refresh_from_db()
    assert user.email != "new@example.com"


def test_a_profile_image_is_uploaded_as_multipart(auth_api, user, tmp_path):
    response = auth_api.patch(ME, {"profile_image": image_file()}, format="multipart")
    assert response.status_code == 200, response.json()
    url = response.json()["profile_image"]
    assert url.startswith("http://testserver/media/profiles/") and url.endswith(".png")
    user.refresh_from_db()
    assert (tmp_path / user.profile_image.name).exists()
    assert "me.png" not in user.profile_image.name  # stored under a random name


def test_a_new_image_replaces_and_deletes_the_old_one(auth_api, user, tmp_path):
    auth_api.patch(ME, {"profile_image": image_file()}, format="multipart")
    user.refresh_from_db()
    old = tmp_path / user.profile_image.name
    auth_api.patch(
        ME, {"profile_image": image_file("b.jpg", fmt="JPEG")}, format="multipart"
    )
    user.refresh_from_db()
    assert not old.exists()
    assert (tmp_path / user.profile_image.name).exists()
    response = auth_api.patch(ME, {"profile_image": None}, format="json")
    assert response.json()["profile_image"] is None
    assert list(Path(tmp_path, "profiles").iterdir()) == []


def test_a_file_that_is_not_an_image_is_a_400(auth_api, user):
    fake = SimpleUploadedFile("me.png", b"not an image at all", "image/png")
    response = auth_api.patch(ME, {"profile_image": fake}, format="multipart")
    assert response.status_code == 400
    assert "profile_image" in response.json()
    user.refresh_from_db()
    assert not user.profile_image


def test_an_image_over_the_size_limit_is_a_400(auth_api, settings):
    settings.PROFILE_IMAGE_MAX_BYTES = 1000
    big = image_file(size=(400, 400), fmt="BMP")
    response = auth_api.patch(ME, {"profile_image": big}, format="multipart")
    assert response.status_code == 400
    assert response.json() == {
        "profile_image": ["The image is larger than 1000 bytes."]
    }


def test_an_image_too_large_in_pixels_is_a_400(auth_api, settings):
    settings.PROFILE_IMAGE_MAX_SIDE = 100
    response = auth_api.patch(
        ME, {"profile_image": image_file(size=(101, 10))}, format="multipart"
    )
    assert response.status_code == 400
    assert "profile_image" in response.json()


def test_an_image_format_we_do_not_take_is_a_400(auth_api):
    response = auth_api.patch(
        ME, {"profile_image": image_file("me.bmp", fmt="BMP")}, format="multipart"
    )
    assert response.status_code == 400
    assert "profile_image" in response.json()


def test_the_profile_needs_a_login(api):
    assert api.get(ME).status_code == 401
    assert api.patch(ME, {"first_name": "X"}, format="json").status_code == 401
