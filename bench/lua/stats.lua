-- Shared helpers for the wrk scripts of `make bench`.
--
-- Every scenario script does:
--   package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
--   local s = require("stats")
--   setup, done = s.setup, s.done
-- and calls s.count(status, expected) from its response() function.
--
-- Environment (set by bench/run.py):
--   BENCH_OUT      file that done() writes its JSON result to
--   BENCH_DATA     data file, one record per line, fields separated by spaces
--   BENCH_THREADS  wrk's thread count (records are dealt to threads round-robin)

local M = {}

local threads = {}
local next_id = 0

-- Per-thread globals (read back with thread:get in done()).
statuses = {}      -- HTTP status -> count
unexpected = 0     -- responses whose status the scenario did not expect
counters = {}      -- scenario-specific counters (name -> number)

function M.setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

-- Count a response; `ok` says whether its status is one the scenario expects.
function M.count(status, ok)
  statuses[status] = (statuses[status] or 0) + 1
  if not ok then
    unexpected = unexpected + 1
  end
end

function M.incr(name, n)
  counters[name] = (counters[name] or 0) + (n or 1)
end

-- The records of BENCH_DATA dealt to this thread (each a list of fields).
function M.records()
  local path = os.getenv("BENCH_DATA")
  local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
  local mine = {}
  if not path then
    return mine
  end
  local i = 0
  for line in io.lines(path) do
    if line ~= "" then
      if i % nthreads == thread_id then
        local fields = {}
        for f in line:gmatch("%S+") do
          table.insert(fields, f)
        end
        table.insert(mine, fields)
      end
      i = i + 1
    end
  end
  return mine
end

function M.urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
end

local function json_value(v)
  if type(v) == "table" then
    local parts = {}
    for k, x in pairs(v) do
      table.insert(parts, string.format("%q:%s", tostring(k), json_value(x)))
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif type(v) == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      return "null"
    end
    return string.format("%.6f", v)
  elseif type(v) == "boolean" then
    return tostring(v)
  elseif v == nil then
    return "null"
  end
  return string.format("%q", tostring(v))
end

function M.done(summary, latency, requests)
  local all_statuses, all_counters, all_unexpected = {}, {}, 0
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses") or {}) do
      all_statuses[k] = (all_statuses[k] or 0) + v
    end
    for k, v in pairs(t:get("counters") or {}) do
      all_counters[k] = (all_counters[k] or 0) + v
    end
    all_unexpected = all_unexpected + (t:get("unexpected") or 0)
  end
  local result = {
    duration_us = summary.duration,
    requests = summary.requests,
    bytes = summary.bytes,
    socket_errors = {
      connect = summary.errors.connect,
      read = summary.errors.read,
      write = summary.errors.write,
      timeout = summary.errors.timeout,
    },
    status_errors = summary.errors.status,
    unexpected = all_unexpected,
    statuses = all_statuses,
    counters = all_counters,
    latency_us = {
      min = latency.min,
      max = latency.max,
      mean = latency.mean,
      stdev = latency.stdev,
      p50 = latency:percentile(50),
      p90 = latency:percentile(90),
      p95 = latency:percentile(95),
      p99 = latency:percentile(99),
      p999 = latency:percentile(99.9),
    },
  }
  local out = os.getenv("BENCH_OUT")
  if out then
    local f = assert(io.open(out, "w"))
    f:write(json_value(result))
    f:close()
  end
end

return M
