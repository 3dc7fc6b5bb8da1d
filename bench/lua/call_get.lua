-- GET /rest/call?token_call=… with the owner's bearer token, across many users.
-- BENCH_DATA lines: "<access_token> <token_call>".
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local s = require("stats")
setup, done = s.setup, s.done

local reqs, n = {}, 0

function init(args)
  for _, r in ipairs(s.records()) do
    table.insert(reqs, wrk.format("GET", "/rest/call?token_call=" .. r[2], {
      ["Authorization"] = "Bearer " .. r[1],
    }))
  end
end

function request()
  n = n % #reqs + 1
  return reqs[n]
end

function response(status, headers, body)
  s.count(status, status == 200)
end
