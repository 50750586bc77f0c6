from django.apps import AppConfig


class TransactionsConfig(AppConfig):
    name = "transactions"
    verbose_name = "Ledger"

    def ready(self) -> None:
        # The webhooks code enqueues its own tasks (a send, a retry, an email)
        # but cannot import them (they import it): they are registered here.
        from transactions import tasks, webhooks

        webhooks.webhook_tasks_register(
            send=tasks.webhook_send_enqueue,
            notify_disabled=tasks.webhook_endpoint_disabled_email.delay,
        )
