-- wrk script for workload (g), "a browser": each connection cycles through a page mix given as
-- the script's arguments (wrk ... -s browser.lua URL -- PATH...), one request per argument.
-- An argument PATH|ETAG is a conditional GET: If-None-Match: ETAG.
-- benches/load/bench.py passes, per 10 requests: 1 proxied page, 6 static assets, 2 misses (302
-- to the bucket) and 1 conditional GET of an asset with that server's own ETag, and checks every
-- one of them against every server before each run.
-- The requests are formatted once, in init(); request() only picks the next one. The reporter
-- (done) is report.lua's, loaded from beside this file.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local reqs = {}
local i = 0

init = function(args)
  for _, a in ipairs(args) do
    local path, etag = a:match("^([^|]+)|(.+)$")
    if path then
      reqs[#reqs + 1] = wrk.format("GET", path, { ["If-None-Match"] = etag })
    else
      reqs[#reqs + 1] = wrk.format("GET", a)
    end
  end
  if #reqs == 0 then
    error("browser.lua: no paths given (wrk ... -s browser.lua URL -- PATH...)")
  end
end

request = function()
  i = i % #reqs + 1
  return reqs[i]
end
