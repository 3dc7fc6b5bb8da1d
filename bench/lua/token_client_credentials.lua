-- POST /oauth/token, grant_type=client_credentials, client_secret_basic.
-- BENCH_BASIC: base64 of "client_id:client_secret"; BENCH_SCOPE: the scope asked for.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local s = require("stats")
setup, done = s.setup, s.done

local req

function init(args)
  req = wrk.format("POST", "/oauth/token", {
    ["Authorization"] = "Basic " .. os.getenv("BENCH_BASIC"),
    ["Content-Type"] = "application/x-www-form-urlencoded",
  }, "grant_type=client_credentials&scope=" .. s.urlencode(os.getenv("BENCH_SCOPE") or "admin"))
end

function request()
  return req
end

function response(status, headers, body)
  s.count(status, status == 200)
end
