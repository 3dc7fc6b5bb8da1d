-- GET one path again and again (the bare-Flask baseline and the JWKS scenario).
-- BENCH_PATH: the path; a 200 is the only expected status.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local s = require("stats")
setup, done = s.setup, s.done

local req

function init(args)
  req = wrk.format("GET", os.getenv("BENCH_PATH") or "/")
end

function request()
  return req
end

function response(status, headers, body)
  s.count(status, status == 200)
end
