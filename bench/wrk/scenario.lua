-- wrk script for every `make bench` scenario.
--   wrk -s bench/wrk/scenario.lua URL -- MODE DATAFILE
-- MODE: operation | transfer | get | history | payout | floor
-- DATAFILE: one target per line, tab-separated:
--   operation: wallet_id  token          (POST /api/v1/wallets/{id}/operation)
--   transfer:  wallet_id  token  number  (POST /api/v1/transfers/ to a random other number)
--   get:       wallet_id  token          (GET  /api/v1/wallets/{id}/)
--   history:   path       token          (GET  path, e.g. a deep cursor)
--   payout:    wallet_id  token  service_token
--              (POST /api/v1/wallets/{id}/payouts/ as the owner, then the provider's
--              PUT /api/v1/service/payouts/{payout}/ {"status": "paid"})
--   floor:     account                   (POST /bench/floor/{account}: the framework floor)
-- Each response is counted by status, and a 201 operation by its type (read from
-- the body), so the runner can check the ledger against what clients were told.
-- Payouts: wrk does not say which connection a response came on, so each thread
-- keeps a queue of the payouts it created (their ids read from the 201 bodies);
-- the next request of any of its connections pays the oldest one, and creates a
-- new payout when the queue is empty. Creates and payments thus alternate, and a
-- payout created near the cut-off may be left pending (its hold kept).
-- done() prints one line: "BENCH_JSON {...}".

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  mode = args[1]
  targets = {}
  for line in io.lines(args[2]) do
    local fields = {}
    for field in string.gmatch(line, "[^\t]+") do
      table.insert(fields, field)
    end
    table.insert(targets, fields)
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1000000) + #tostring({}))
  statuses = {}
  deposits = 0
  withdrawals = 0
  transfers = 0
  retry_after = 0
  -- Requests sent that move money: at wrk's cut-off up to one per connection is
  -- still in flight, its outcome never seen by the client.
  sent_deposits = 0
  sent_withdrawals = 0
  sent_transfers = 0
  payouts = 0 -- 201: created (the amount held)
  paid = 0 -- 200 with "status":"paid"
  sent_payouts = 0
  sent_payments = 0
  unpaid = {} -- ids of payouts created, not yet sent to be paid (FIFO)
end

local function pick()
  return targets[math.random(#targets)]
end

function request()
  local t = pick()
  if mode == "operation" then
    local op = math.random(2) == 1 and "DEPOSIT" or "WITHDRAW"
    if op == "DEPOSIT" then
      sent_deposits = sent_deposits + 1
    else
      sent_withdrawals = sent_withdrawals + 1
    end
    return wrk.format("POST", "/api/v1/wallets/" .. t[1] .. "/operation",
      {["Authorization"] = "Bearer " .. t[2], ["Content-Type"] = "application/json"},
      '{"operation_type":"' .. op .. '","amount":"1.00"}')
  elseif mode == "transfer" then
    local other = pick()
    while other[1] == t[1] do other = pick() end
    sent_transfers = sent_transfers + 1
    return wrk.format("POST", "/api/v1/transfers/",
      {["Authorization"] = "Bearer " .. t[2], ["Content-Type"] = "application/json"},
      '{"from_wallet":"' .. t[1] .. '","to_wallet_number":"' .. other[3] ..
      '","amount":"1.00"}')
  elseif mode == "get" then
    return wrk.format("GET", "/api/v1/wallets/" .. t[1] .. "/",
      {["Authorization"] = "Bearer " .. t[2]})
  elseif mode == "history" then
    return wrk.format("GET", t[1], {["Authorization"] = "Bearer " .. t[2]})
  elseif mode == "payout" then
    if #unpaid > 0 then
      sent_payments = sent_payments + 1
      return wrk.format("PUT", "/api/v1/service/payouts/" .. table.remove(unpaid, 1) .. "/",
        {["Authorization"] = "Bearer " .. t[3], ["Content-Type"] = "application/json"},
        '{"status":"paid"}')
    end
    sent_payouts = sent_payouts + 1
    return wrk.format("POST", "/api/v1/wallets/" .. t[1] .. "/payouts/",
      {["Authorization"] = "Bearer " .. t[2], ["Content-Type"] = "application/json"},
      '{"amount":"1.00","destination":"bench-card-' .. sent_payouts .. '"}')
  else -- floor
    local op = math.random(2) == 1 and "DEPOSIT" or "WITHDRAW"
    return wrk.format("POST", "/bench/floor/" .. t[1] .. "?op=" .. op, {}, "")
  end
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status == 429 or status == 503 then
    if headers["Retry-After"] or headers["retry-after"] then
      retry_after = retry_after + 1
    end
  end
  if status == 201 then
    if mode == "operation" then
      if string.find(body, '"operation_type":"DEPOSIT"', 1, true) then
        deposits = deposits + 1
      else
        withdrawals = withdrawals + 1
      end
    elseif mode == "transfer" then
      transfers = transfers + 1
    elseif mode == "payout" then
      payouts = payouts + 1
      -- The payout's own id is the body's first "id" (not "transaction_id").
      local id = string.match(body, '"id"%s*:%s*"([%x%-]+)"')
      if id then table.insert(unpaid, id) end
    end
  elseif status == 200 and mode == "payout" then
    if string.find(body, '"status":"paid"', 1, true) then
      paid = paid + 1
    end
  end
end

function done(summary, latency, requests)
  local all = {}
  local dep, wd, tr, ra = 0, 0, 0, 0
  local sdep, swd, str = 0, 0, 0
  local po, pd, spo, spd, queued = 0, 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      all[status] = (all[status] or 0) + n
    end
    dep = dep + thread:get("deposits")
    wd = wd + thread:get("withdrawals")
    tr = tr + thread:get("transfers")
    ra = ra + thread:get("retry_after")
    sdep = sdep + thread:get("sent_deposits")
    swd = swd + thread:get("sent_withdrawals")
    str = str + thread:get("sent_transfers")
    po = po + thread:get("payouts")
    pd = pd + thread:get("paid")
    spo = spo + thread:get("sent_payouts")
    spd = spd + thread:get("sent_payments")
    queued = queued + #thread:get("unpaid")
  end
  local parts = {}
  for status, n in pairs(all) do
    table.insert(parts, string.format('"%s":%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_ms":{"p50":%.3f,"p90":%.3f,"p99":%.3f,"max":%.3f,"mean":%.3f},' ..
    '"statuses":{%s},"deposits":%d,"withdrawals":%d,"transfers":%d,' ..
    '"payouts":%d,"paid":%d,"unpaid_queued":%d,"retry_after":%d,' ..
    '"sent":{"deposits":%d,"withdrawals":%d,"transfers":%d,' ..
    '"payouts":%d,"payments":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000,
    table.concat(parts, ","), dep, wd, tr, po, pd, queued, ra, sdep, swd, str,
    spo, spd))
end
