-- POST /rest/call, every request for one user who is already at the limit: each one must
-- be refused with 409 max_calls_exceeded (the expected status). A 201 would mean the limit
-- was broken under concurrency and counts as an error.
-- BENCH_DATA line: "<subject> <access_token>".
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local s = require("stats")
setup, done = s.setup, s.done

local req

function init(args)
  local path = os.getenv("BENCH_DATA")
  local token
  for line in io.lines(path) do
    token = line:match("%S+%s+(%S+)")
    if token then
      break
    end
  end
  req = wrk.format("POST", "/rest/call", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/x-www-form-urlencoded",
  }, "number=" .. s.urlencode("+14155550123"))
end

function request()
  return req
end

function response(status, headers, body)
  if status == 409 then
    s.incr("expected_409")
  end
  s.count(status, status == 409)
end
