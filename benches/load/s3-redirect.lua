-- lighttpd mod_magnet script (copied by benches/load/bench.py): spillway's /uploads route in
-- lighttpd 1.4, the seed of the project. "Stat the file, else 302 to S3."
--
-- It runs at the physical-path stage (magnet.attract-physical-path-to, only for URLs under
-- /uploads/): lighttpd has already mapped the URL to a file name under server.document-root.
--   - A regular file there: the script returns nothing and lighttpd goes on to mod_staticfile,
--     which serves it with its ETag and Last-Modified, answers If-None-Match with 304, does
--     ranges, and sends the body with sendfile. (A script that served hits itself would lose
--     all of that: a conditional GET would get 200.)
--   - Anything else: 302 to the object's URL in the bucket. lighttpd cannot presign, so a
--     private object gets the same unsigned URL (as from nginx).
-- The same Location as nginx's `return 302 http://127.0.0.1:9000/example-media$uri`.
--
-- lighttpd 1.4.69 API (src/mod_magnet.c): lighty.c.stat(path) goes through lighttpd's stat
-- cache and returns nil when stat() fails; lighty.r.req_attr["physical.path"] is the mapped
-- file name and ["uri.path"] the decoded URL path; a returned status >= 200 ends the request
-- with lighty.r.resp_header as the headers.
local r = lighty.r
local st = lighty.c.stat(r.req_attr["physical.path"])
if st and st.is_file then
  return -- a hit: mod_staticfile
end
r.resp_header["Location"] = "http://127.0.0.1:9000/example-media" .. r.req_attr["uri.path"]
return 302
