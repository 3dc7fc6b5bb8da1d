-- GET /rest/call (the caller's ongoing calls), across many users.
-- BENCH_DATA lines: "<access_token>".
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local s = require("stats")
setup, done = s.setup, s.done

local reqs, n = {}, 0

function init(args)
  for _, r in ipairs(s.records()) do
    table.insert(reqs, wrk.format("GET", "/rest/call", { ["Authorization"] = "Bearer " .. r[1] }))
  end
end

function request()
  n = n % #reqs + 1
  return reqs[n]
end

function response(status, headers, body)
  s.count(status, status == 200)
end
