-- POST /rest/call then PUT /rest/call (end it): pairs across many users.
-- BENCH_DATA lines: "<subject> <access_token>". Each wrk thread owns its own users and
-- cycles through them; a 201's call is queued and ended by the next request the thread
-- sends (PUTs go before new POSTs), so no user gets near the limit: a 409 here is an error.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local s = require("stats")
setup, done = s.setup, s.done

local posts, tokens, n = {}, {}, 0
local queue, head, tail = {}, 1, 0
local number = "number=" .. s.urlencode("+14155550123")

function init(args)
  for _, r in ipairs(s.records()) do
    tokens[r[1]] = r[2]
    table.insert(posts, wrk.format("POST", "/rest/call", {
      ["Authorization"] = "Bearer " .. r[2],
      ["Content-Type"] = "application/x-www-form-urlencoded",
    }, number))
  end
end

function request()
  if head <= tail then
    local item = queue[head]
    queue[head] = nil
    head = head + 1
    s.incr("put")
    return wrk.format("PUT", "/rest/call", {
      ["Authorization"] = "Bearer " .. tokens[item[1]],
      ["Content-Type"] = "application/x-www-form-urlencoded",
    }, "token_call=" .. item[2])
  end
  n = n % #posts + 1
  s.incr("post")
  return posts[n]
end

function response(status, headers, body)
  if status == 201 then
    local subject = body:match('"subject": "([^"]+)"')
    local token_call = body:match('"token_call": "([^"]+)"')
    if subject and token_call and tokens[subject] then
      tail = tail + 1
      queue[tail] = { subject, token_call }
    else
      s.incr("unparsed")
    end
  end
  s.count(status, status == 201 or status == 200)
end
