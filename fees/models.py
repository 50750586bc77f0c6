# The monthly fee plan, fee charges and debt live here (see the fees issue).
