-- wrk script of bench/portal_load.py: every request picks a random customer's session
-- cookie and a random path from the list, so the load spreads over all seeded customers.
--
--   wrk -t2 -c100 -d30s --latency -s bench/portal_load.lua http://127.0.0.1:PORT \
--       -- TOKENS_FILE /api/v1/portal/summary,/api/v1/portal/consumption [THINK_MS]
--
-- TOKENS_FILE holds one plain session token per line (the bench writes it); an empty
-- TOKENS_FILE sends no cookie (the health ceiling). THINK_MS > 0 makes each connection a
-- user who waits a random (exponential, mean THINK_MS) time after every answer before the
-- next click; wrk's latency still counts only send → answer.

local tokens = {}
local paths = {}
local counter = 0
local think_ms = 0

function setup(thread)
   counter = counter + 1
   thread:set("thread_no", counter)
end

function init(args)
   if args[1] and #args[1] > 0 then
      for line in io.lines(args[1]) do
         if #line > 0 then tokens[#tokens + 1] = line end
      end
   end
   for p in string.gmatch(args[2] or "/", "[^,]+") do
      paths[#paths + 1] = p
   end
   think_ms = tonumber(args[3] or "0") or 0
   if think_ms <= 0 then
      delay = nil  -- wrk asks after init: no timer per request when nobody thinks
   end
   math.randomseed(os.time() * 1000 + (thread_no or 0))
end

-- capped below uvicorn's keep-alive (5 s): a longer pause would find the connection closed
function delay()
   return math.min(math.floor(-math.log(1 - math.random()) * think_ms), 4 * think_ms, 4500)
end

function request()
   local path = paths[math.random(#paths)]
   if #tokens == 0 then
      return wrk.format("GET", path)
   end
   local token = tokens[math.random(#tokens)]
   return wrk.format("GET", path, { ["Cookie"] = "portal_session=" .. token })
end
