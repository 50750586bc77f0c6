"""Events and webhooks in the back-office: read-only lists and pages with their
filters and searches, no signing secret on any page, resend a delivery and
disable/enable an endpoint through `transactions.webhooks` with a LogEntry,
who may do what, the dashboard's figure, and query counts that do not grow
with the rows."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse
from django.utils import timezone

from accounts.tests.factories import UserFactory
from accounts.tests.operators import FINANCE, SUPPORT, admin_client, operator
from transactions import ledger, webhooks
from transactions.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from wallets.models import Wallet

pytestmark = pytest.mark.django_db

D = Decimal
EVENTS = reverse("admin:transactions_event_changelist")
ENDPOINTS = reverse("admin:transactions_webhookendpoint_changelist")
DELIVERIES = reverse("admin:transactions_webhookdelivery_changelist")
DASHBOARD = reverse("admin:dashboard")
SECRET = "whsec_cafe0123456789abcdef0123456789abcdef0123456789ab"
PREVIOUS_SECRET = "whsec_beef9876543210fedcba9876543210fedcba9876543210"


def found(response) -> set:
    assert response.status_code == 200
    return {obj.pk for obj in response.context["cl"].result_list}


def html_of(response) -> str:
    assert response.status_code == 200
    return response.content.decode()


def deposit_events(wallet: Wallet, *amounts: str) -> list[Event]:
    """Real deposits through the ledger; each writes its `transaction.posted`."""
    for amount in amounts:
        ledger.wallet_deposit(wallet=wallet, amount=D(amount))
    return list(Event.objects.filter(wallet=wallet).order_by("sequence"))


def endpoint(owner, url: str = "https://hooks.example.com/wallet", **fields):
    fields.setdefault("event_types", ["*"])
    return WebhookEndpoint.objects.create(user=owner, url=url, secret=SECRET, **fields)


def delivery(to: WebhookEndpoint, event: Event, status="failed", codes=(500,)):
    """A delivery as the delivery code leaves it, with one attempt per code
    (None: no answer, a timeout)."""
    now = timezone.now()
    made = WebhookDelivery.objects.create(
        endpoint=to,
        event=event,
        status=status,
        attempts=len(codes),
        last_status_code=codes[-1] if codes else None,
        next_attempt_at=now + timedelta(minutes=2) if status == "pending" else None,
        delivered_at=now if status == "delivered" else None,
    )
    for i, code in enumerate(codes):
        WebhookAttempt.objects.create(
            delivery=made,
            started_at=now - timedelta(minutes=10 - i),
            duration_ms=120 + i,
            status_code=code,
            error="" if code else "timeout after 10 s",
            response_excerpt=f"answer {i}: {code}" if code else "",
        )
    return made


def log_messages(obj) -> list[str]:
    return list(
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(obj), object_id=str(obj.pk)
        ).values_list("change_message", flat=True)
    )


def change_url(obj) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])


def resend_url(obj) -> str:
    return reverse("admin:transactions_webhookdelivery_resend", args=[obj.pk])


def enable_url(obj) -> str:
    return reverse("admin:transactions_webhookendpoint_enable", args=[obj.pk])


def disabled_for_failing(hook: WebhookEndpoint) -> WebhookEndpoint:
    """As the delivery code leaves an endpoint that failed for too long."""
    WebhookEndpoint.objects.filter(pk=hook.pk).update(
        failing_since=timezone.now() - timedelta(days=4)
    )
    assert webhooks.endpoints_disable_failing(endpoint_id=hook.pk) == 1
    hook.refresh_from_db()
    assert hook.status == WebhookEndpoint.Status.DISABLED
    return hook


def actions_offered(client, url: str = DELIVERIES) -> list[str]:
    form = client.get(url).context["action_form"]  # None: no action at all
    return [name for name, _label in form.fields["action"].choices] if form else []


def act(client, url: str, action: str, objects):
    return client.post(
        url,
        {"action": action, "_selected_action": [str(obj.pk) for obj in objects]},
        follow=True,
    )


@pytest.fixture
def superuser(db):
    return admin_client(operator())


@pytest.fixture
def finance(db):
    return admin_client(operator(FINANCE, email="fin@ops.example"))


@pytest.fixture
def support(db):
    return admin_client(operator(SUPPORT, email="sup@ops.example"))


@pytest.fixture
def scene(make_wallet):
    """Two owners, each a wallet with events and an endpoint; deliveries in
    every status."""
    alice = UserFactory(email="alice@client.example")
    bob = UserFactory(email="bob@client.example")
    kzt = make_wallet(owner=alice, currency="KZT", balance="100.00")
    usd = make_wallet(owner=bob, currency="USD", balance="5.00")
    alice_events = deposit_events(kzt, "20.00", "30.00")
    bob_events = deposit_events(usd)
    ledger.wallet_block(wallet=usd, reason="fraud check")
    bob_events = list(Event.objects.filter(wallet=usd).order_by("sequence"))
    hook_a = endpoint(alice, "https://alice.example.net/hooks")
    hook_b = endpoint(bob, "https://bob.example.org/in", event_types=["wallet.blocked"])
    return {
        "alice": alice,
        "bob": bob,
        "kzt": kzt,
        "usd": usd,
        "alice_events": alice_events,
        "bob_events": bob_events,
        "hook_a": hook_a,
        "hook_b": hook_b,
        "failed": delivery(hook_a, alice_events[0], "failed", (500, None, 503)),
        "delivered": delivery(hook_a, alice_events[1], "delivered", (502, 200)),
        "pending": delivery(hook_a, alice_events[2], "pending", (404,)),
        "blocked": delivery(hook_b, bob_events[-1], "delivered", (204,)),
    }


# --- Events ---------------------------------------------------------------------------


class TestEvents:
    @pytest.mark.parametrize("role", [None, SUPPORT, FINANCE])
    def test_every_role_lists_filters_and_searches_them(self, role, scene):
        client = admin_client(operator(role))
        alice_ids = {event.pk for event in scene["alice_events"]}
        bob_ids = {event.pk for event in scene["bob_events"]}
        page = client.get(EVENTS)
        assert found(page) == alice_ids | bob_ids
        html = page.content.decode()
        for text in (scene["kzt"].number, "alice@client.example", "wallet.blocked"):
            assert text in html
        blocked = client.get(EVENTS, {"type": "wallet.blocked"})
        assert found(blocked) == {scene["bob_events"][-1].pk}
        assert found(client.get(EVENTS, {"q": scene["kzt"].number})) == alice_ids
        assert found(client.get(EVENTS, {"q": "BOB@client.example"})) == bob_ids
        first = scene["alice_events"][0]
        assert found(client.get(EVENTS, {"q": str(first.pk)})) == {first.pk}
        assert found(client.get(EVENTS, {"q": "nobody@client.example"})) == set()
        assert found(client.get(EVENTS, {"q": "9" * 30})) == set()

    def test_an_event_shows_its_data_as_json_and_links_to_its_deliveries(
        self, scene, superuser
    ):
        event = scene["alice_events"][1]
        html = html_of(superuser.get(change_url(event)))
        assert "<pre>" in html
        assert f"&quot;transaction_id&quot;: &quot;{event.data['transaction_id']}" in (
            html
        )
        assert "&quot;amount&quot;: &quot;20.00&quot;" in html
        assert f"{DELIVERIES}?event={event.pk}" in html
        listed = superuser.get(DELIVERIES, {"event": event.pk})
        assert found(listed) == {scene["delivered"].pk}

    def test_nobody_adds_changes_or_deletes_events(self, scene, superuser):
        event = scene["alice_events"][0]
        assert superuser.get(reverse("admin:transactions_event_add")).status_code == 403
        page = html_of(superuser.get(change_url(event)))
        assert 'name="_save"' not in page
        assert superuser.post(change_url(event), {"type": "x"}).status_code == 403
        delete = reverse("admin:transactions_event_delete", args=[event.pk])
        assert superuser.post(delete, {"post": "yes"}).status_code == 403
        assert Event.objects.filter(pk=event.pk, type="transaction.posted").exists()


# --- Endpoints ----------------------------------------------------------------------------


class TestEndpoints:
    @pytest.mark.parametrize("role", [None, SUPPORT, FINANCE])
    def test_the_list_counts_pending_and_failed_deliveries(self, role, scene):
        client = admin_client(operator(role))
        page = client.get(ENDPOINTS)
        assert found(page) == {scene["hook_a"].pk, scene["hook_b"].pk}
        rows = {row.pk: row for row in page.context["cl"].result_list}
        hook_a = rows[scene["hook_a"].pk]
        assert (hook_a.pending_deliveries, hook_a.failed_deliveries) == (1, 1)
        hook_b = rows[scene["hook_b"].pk]
        assert (hook_b.pending_deliveries, hook_b.failed_deliveries) == (0, 0)
        html = page.content.decode()
        assert "alice@client.example" in html
        assert "wallet.blocked" in html
        pending_link = (
            f"{DELIVERIES}?endpoint={scene['hook_a'].pk}&amp;status__exact=pending"
        )
        assert pending_link in html
        listed = client.get(
            DELIVERIES, {"endpoint": scene["hook_a"].pk, "status__exact": "pending"}
        )
        assert found(listed) == {scene["pending"].pk}

    def test_filters_and_search(self, scene, superuser):
        hook_a, hook_b = scene["hook_a"], scene["hook_b"]
        WebhookEndpoint.objects.filter(pk=hook_b.pk).update(
            status="disabled", failing_since=timezone.now() - timedelta(days=3)
        )
        assert found(superuser.get(ENDPOINTS, {"status__exact": "disabled"})) == {
            hook_b.pk
        }
        assert found(superuser.get(ENDPOINTS, {"failing": "yes"})) == {hook_b.pk}
        assert found(superuser.get(ENDPOINTS, {"failing": "no"})) == {hook_a.pk}
        assert found(superuser.get(ENDPOINTS, {"q": "alice.example"})) == {hook_a.pk}
        assert found(superuser.get(ENDPOINTS, {"q": "bob@client"})) == {hook_b.pk}
        assert found(superuser.get(ENDPOINTS, {"q": str(hook_a.pk)})) == {hook_a.pk}

    def test_the_page_is_read_only_and_says_only_that_a_secret_is_set(
        self, scene, superuser
    ):
        hook = scene["hook_a"]
        html = html_of(superuser.get(change_url(hook)))
        assert "Set (shown to its owner only)." in html
        assert "Rotated" not in html
        assert 'name="_save"' not in html
        assert 'name="url"' not in html
        superuser.post(change_url(hook), {"url": "https://evil.example/"})
        hook.refresh_from_db()
        assert hook.url == "https://alice.example.net/hooks"
        assert (
            superuser.get(reverse("admin:transactions_webhookendpoint_add")).status_code
            == 403
        )
        delete = reverse("admin:transactions_webhookendpoint_delete", args=[hook.pk])
        assert superuser.post(delete, {"post": "yes"}).status_code == 403
        assert WebhookEndpoint.objects.filter(pk=hook.pk).exists()

    def test_a_rotation_shows_until_when_the_previous_secret_signs(
        self, scene, superuser
    ):
        hook = scene["hook_a"]
        WebhookEndpoint.objects.filter(pk=hook.pk).update(
            previous_secret=PREVIOUS_SECRET,
            previous_secret_expires_at=timezone.now() + timedelta(hours=20),
        )
        html = html_of(superuser.get(change_url(hook)))
        assert "Rotated: the previous secret also signs until" in html


def test_no_page_shows_a_signing_secret_or_any_part_of_it(scene, superuser):
    """Not the secret, not the previous one, not a prefix or a suffix of either."""
    hook = scene["hook_a"]
    WebhookEndpoint.objects.filter(pk=hook.pk).update(
        previous_secret=PREVIOUS_SECRET,
        previous_secret_expires_at=timezone.now() + timedelta(hours=20),
    )
    pages = [
        EVENTS,
        ENDPOINTS,
        DELIVERIES,
        DASHBOARD,
        reverse("admin:index"),
        reverse("admin:app_list", args=["transactions"]),
        change_url(hook),
        change_url(scene["hook_b"]),
        reverse("admin:transactions_webhookendpoint_history", args=[hook.pk]),
        change_url(scene["failed"]),
        change_url(scene["blocked"]),
        change_url(scene["alice_events"][0]),
        f"{ENDPOINTS}?q=alice",
        f"{DELIVERIES}?q=alice",
        reverse("admin:admin_logentry_changelist"),
    ]
    for url in pages:
        html = html_of(superuser.get(url))
        for secret in (SECRET, PREVIOUS_SECRET):
            # The secrets' random parts, and 12-character slices of them.
            tail = secret.removeprefix("whsec_")
            for start in range(0, len(tail) - 12, 6):
                assert tail[start : start + 12] not in html, (url, start)


# --- Deliveries --------------------------------------------------------------------------


class TestDeliveries:
    @pytest.mark.parametrize("role", [None, SUPPORT, FINANCE])
    def test_every_role_lists_filters_and_searches_them(self, role, scene):
        client = admin_client(operator(role))
        everything = {
            scene[name].pk for name in ("failed", "delivered", "pending", "blocked")
        }
        page = client.get(DELIVERIES)
        assert found(page) == everything
        html = page.content.decode()
        for text in (
            "https://alice.example.net/hooks",
            "bob@client.example",
            "wallet.blocked",
            "503",
        ):
            assert text in html
        assert found(client.get(DELIVERIES, {"status__exact": "failed"})) == {
            scene["failed"].pk
        }
        by_type = client.get(DELIVERIES, {"event_type": "wallet.blocked"})
        assert found(by_type) == {scene["blocked"].pk}
        event = scene["failed"].event
        assert found(client.get(DELIVERIES, {"q": str(event.pk)})) == {
            scene["failed"].pk
        }
        assert found(client.get(DELIVERIES, {"q": "bob.example.org"})) == {
            scene["blocked"].pk
        }
        assert found(client.get(DELIVERIES, {"q": "ALICE@client"})) == {
            scene["failed"].pk,
            scene["delivered"].pk,
            scene["pending"].pk,
        }
        assert found(client.get(DELIVERIES, {"q": "nowhere.example"})) == set()
        assert found(client.get(DELIVERIES, {"endpoint": "not-a-uuid"})) == set()
        assert found(client.get(DELIVERIES, {"event": "9" * 30})) == set()
        assert found(client.get(DELIVERIES, {"event_type": "no.such"})) == everything

    def test_a_delivery_shows_every_attempt_read_only(self, scene, support):
        failed = scene["failed"]
        page = support.get(change_url(failed))
        html = html_of(page)
        attempts = html.split('id="attempt_set-group"')[1]
        for text in ("500", "503", "timeout after 10 s", "answer 0: 500", "122"):
            assert text in attempts, text
        assert attempts.count('class="form-row') >= 3
        assert "attempt_set-0-status_code" not in html  # no inputs, only text
        assert "https://alice.example.net/hooks" in html
        assert change_url(failed.event) in html
        assert "&quot;amount&quot;: &quot;100.00&quot;" in html  # the event's data
        assert 'name="_save"' not in html

    def test_what_a_receiver_answers_is_shown_as_text(self, scene, superuser):
        xss = "<script>alert(1)</script>"
        WebhookAttempt.objects.filter(delivery=scene["failed"]).update(
            response_excerpt=xss, error=xss
        )
        html = html_of(superuser.get(change_url(scene["failed"])))
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html

    def test_nobody_adds_changes_or_deletes_deliveries(self, scene, superuser):
        failed = scene["failed"]
        add = reverse("admin:transactions_webhookdelivery_add")
        assert superuser.get(add).status_code == 403
        assert (
            superuser.post(change_url(failed), {"status": "delivered"}).status_code
            == 403
        )
        delete = reverse("admin:transactions_webhookdelivery_delete", args=[failed.pk])
        assert superuser.post(delete, {"post": "yes"}).status_code == 403
        failed.refresh_from_db()
        assert failed.status == "failed"


class TestResend:
    def test_finance_resends_from_the_page_and_it_is_logged(self, scene, finance):
        failed = scene["failed"]
        page = html_of(finance.get(change_url(failed)))
        assert resend_url(failed) in page
        before = timezone.now()
        response = finance.post(resend_url(failed), follow=True)
        html = html_of(response)
        assert "is pending again and will be sent now" in html
        failed.refresh_from_db()
        assert failed.status == WebhookDelivery.Status.PENDING
        assert failed.next_attempt_at is not None
        assert failed.next_attempt_at <= timezone.now()
        assert failed.next_attempt_at >= before - timedelta(seconds=1)
        (entry,) = LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(failed),
            object_id=str(failed.pk),
        )
        assert entry.user.email == "fin@ops.example"
        assert entry.change_message == "Resent (was failed after 3 attempts)."
        # Pending now: no button to resend it again.
        assert resend_url(failed) not in html_of(finance.get(change_url(failed)))

    def test_the_action_resends_the_selected_and_skips_the_pending(
        self, scene, finance
    ):
        chosen = [scene["delivered"], scene["blocked"], scene["pending"]]
        response = act(finance, DELIVERIES, "resend_deliveries", chosen)
        html = html_of(response)
        assert html.count("is pending again and will be sent now") == 2
        assert "is already pending" in html
        for obj in chosen:
            obj.refresh_from_db()
            assert obj.status == WebhookDelivery.Status.PENDING
        assert log_messages(scene["delivered"]) == [
            "Resent (was delivered after 2 attempts)."
        ]
        assert log_messages(scene["pending"]) == []
        scene["failed"].refresh_from_db()
        assert scene["failed"].status == WebhookDelivery.Status.FAILED

    def test_support_sees_no_resend_and_is_refused_it(self, scene, support):
        failed = scene["failed"]
        assert "resend_deliveries" in actions_offered(admin_client(operator(FINANCE)))
        assert "resend_deliveries" not in actions_offered(support)
        assert resend_url(failed) not in html_of(support.get(change_url(failed)))
        assert support.post(resend_url(failed)).status_code == 403
        act(support, DELIVERIES, "resend_deliveries", [failed])
        failed.refresh_from_db()
        assert failed.status == WebhookDelivery.Status.FAILED
        assert log_messages(failed) == []

    def test_resend_is_a_post(self, scene, finance):
        assert finance.get(resend_url(scene["failed"])).status_code == 405


class TestEnable:
    def test_finance_enables_an_endpoint_the_delivery_code_disabled(
        self, scene, finance
    ):
        hook = disabled_for_failing(scene["hook_a"])
        page = html_of(finance.get(change_url(hook)))
        assert 'id="enable-button"' in page
        response = finance.post(enable_url(hook), follow=True)
        html = html_of(response)
        assert "enabled: new events reach it from now on" in html
        assert 'id="enable-button"' not in html
        hook.refresh_from_db()
        assert hook.status == WebhookEndpoint.Status.ENABLED
        assert (hook.failing_since, hook.disabled_at) == (None, None)
        (message,) = log_messages(hook)
        assert message.startswith("Enabled (was disabled at ")

    def test_the_action_skips_what_is_already_enabled(self, scene, finance):
        hooks = [disabled_for_failing(scene["hook_a"]), scene["hook_b"]]
        html = html_of(act(finance, ENDPOINTS, "enable_endpoints", hooks))
        assert "is already enabled" in html
        assert "enabled: new events reach it" in html
        assert set(WebhookEndpoint.objects.values_list("status", flat=True)) == {
            "enabled"
        }
        assert len(log_messages(hooks[0])) == 1
        assert log_messages(hooks[1]) == []

    def test_support_may_not(self, scene, support):
        hook = disabled_for_failing(scene["hook_a"])
        assert 'id="enable-button"' not in html_of(support.get(change_url(hook)))
        assert support.post(enable_url(hook)).status_code == 403
        act(support, ENDPOINTS, "enable_endpoints", [hook])
        hook.refresh_from_db()
        assert hook.status == WebhookEndpoint.Status.DISABLED
        assert log_messages(hook) == []


def test_a_staff_user_in_no_role_gets_403_on_every_webhook_page(scene):
    client = admin_client(UserFactory(is_staff=True))
    for url in (
        EVENTS,
        ENDPOINTS,
        DELIVERIES,
        change_url(scene["failed"]),
        change_url(scene["hook_a"]),
        change_url(scene["alice_events"][0]),
    ):
        assert client.get(url).status_code == 403, url
    assert client.post(resend_url(scene["failed"])).status_code == 403
    assert client.post(enable_url(scene["hook_a"])).status_code == 403


def test_the_dashboard_shows_pending_deliveries_and_failing_endpoints(scene, support):
    WebhookEndpoint.objects.filter(pk=scene["hook_b"].pk).update(
        failing_since=timezone.now() - timedelta(hours=5)
    )
    response = support.get(DASHBOARD)
    assert response.context["pending_webhook_deliveries"] == 1
    assert response.context["failing_webhook_endpoints"] == 1
    assert (
        response.context["oldest_due_webhook_delivery"]
        == scene["pending"].next_attempt_at
    )
    html = html_of(response)
    card = html.split('id="card-webhooks"')[1].split("</div>\n    </div>")[0]
    assert f"{DELIVERIES}?status__exact=pending" in card
    assert "1 endpoint failing" in card
    failing = support.get(f"{ENDPOINTS}?status__exact=enabled&failing=yes")
    assert found(failing) == {scene["hook_b"].pk}


class TestQueryCounts:
    """A page's queries do not grow with its rows (no N+1)."""

    def _more(self, make_wallet, count: int) -> None:
        for i in range(count):
            owner = UserFactory()
            wallet = make_wallet(owner=owner, balance="3.00")
            (event,) = deposit_events(wallet)
            hook = endpoint(owner, f"https://n{i}.example.com/")
            delivery(hook, event, "failed", (500, 500))

    @pytest.mark.parametrize("url", [EVENTS, ENDPOINTS, DELIVERIES])
    def test_changelists(
        self, url, make_wallet, superuser, django_assert_max_num_queries
    ):
        self._more(make_wallet, 1)
        superuser.get(url)  # warm the content type cache
        with django_assert_max_num_queries(50) as few:
            assert superuser.get(url).status_code == 200
        self._more(make_wallet, 6)
        with django_assert_max_num_queries(50) as many:
            assert superuser.get(url).status_code == 200
        assert len(many.captured_queries) == len(few.captured_queries)

    def test_a_delivery_with_many_attempts(
        self, scene, superuser, django_assert_max_num_queries
    ):
        few_url = change_url(scene["blocked"])  # one attempt
        superuser.get(few_url)  # warm the content type cache
        with django_assert_max_num_queries(50) as few:
            html_of(superuser.get(few_url))
        many = delivery(scene["hook_b"], scene["bob_events"][0], "failed", (500,) * 12)
        with django_assert_max_num_queries(50) as lots:
            html_of(superuser.get(change_url(many)))
        assert len(lots.captured_queries) == len(few.captured_queries)
