-- POST /oauth/token, grant_type=authorization_code with PKCE, each code used once.
-- BENCH_DATA lines: "<code> <code_verifier>" (pre-minted by bench/run.py);
-- BENCH_BASIC: base64 of "client_id:client_secret"; BENCH_REDIRECT: the redirect URI.
-- A thread that runs out of codes stops (counted as "exhausted"; run.py mints enough).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local s = require("stats")
setup, done = s.setup, s.done

local reqs, n, fallback = {}, 0, nil

function init(args)
  local headers = {
    ["Authorization"] = "Basic " .. os.getenv("BENCH_BASIC"),
    ["Content-Type"] = "application/x-www-form-urlencoded",
  }
  local redirect = s.urlencode(os.getenv("BENCH_REDIRECT"))
  for _, r in ipairs(s.records()) do
    local body = "grant_type=authorization_code&code=" .. s.urlencode(r[1])
      .. "&redirect_uri=" .. redirect .. "&code_verifier=" .. s.urlencode(r[2])
    table.insert(reqs, wrk.format("POST", "/oauth/token", headers, body))
  end
  fallback = wrk.format("GET", "/healthz")
end

function request()
  n = n + 1
  if n > #reqs then
    if n == #reqs + 1 then
      s.incr("exhausted")
      wrk.thread:stop()
    end
    return fallback
  end
  return reqs[n]
end

function response(status, headers, body)
  s.count(status, status == 200)
end
