"""`make bench`: the production-like stack on loopback under wrk, against two floors."""
