from celery import shared_task

from wallets.services import exchange_rates_refresh


@shared_task(name="wallets.tasks.exchange_rates_refresh", ignore_result=True)
def exchange_rates_refresh_task() -> dict:
    """Beat job (hourly by default): refresh the exchange rates. Failures are
    logged by the service and leave the last good rates in place; the next run
    tries again, so the task itself does not retry."""
    result = exchange_rates_refresh()
    return {"updated": result.updated, "failed": result.failed}
