"""The framework floor: the least Django can do for one wallet operation.

No authentication, no serializer, no idempotency, no domain checks beyond the
SQL itself: one conditional UPDATE + one entry INSERT (one statement, one round
trip) and the COMMIT, the same SQL the pgbench floor runs (bench/sql/floor.sql),
through the same Nginx, Gunicorn (gevent) workers and database pool as the API.
"""

import json

from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

# Same statement as bench/sql/floor.sql (pgbench).
FLOOR_SQL = """
WITH w AS (
    UPDATE bench_account SET balance = balance + %(delta)s
     WHERE id = %(account)s AND balance + %(delta)s >= 0 AND status = 'active'
 RETURNING id, balance
)
INSERT INTO bench_entry (account_id, amount, balance_after, created_at)
SELECT id, %(delta)s, balance, now() FROM w
RETURNING balance_after
"""


@csrf_exempt
def floor_operation(request: HttpRequest, account: int) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405)
    delta = 1 if request.GET.get("op") == "DEPOSIT" else -1
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(FLOOR_SQL, {"delta": delta, "account": account})
        row = cursor.fetchone()
    if row is None:
        return HttpResponse(status=400)
    body = json.dumps({"status": "SUCCESS", "new_balance": str(row[0])})
    return HttpResponse(body, status=201, content_type="application/json")
