-- wrk reporter: one machine-readable line after wrk's own text output.
-- Only done() is defined, so wrk keeps its fast C path for requests and responses.
-- Latencies are in microseconds. errors.status counts responses with status > 399
-- (what wrk prints as "Non-2xx or 3xx responses").
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKSTAT requests=%d duration_us=%d bytes=%d p50_us=%.0f p99_us=%.0f max_us=%.0f " ..
    "connect=%d read=%d write=%d timeout=%d status=%d\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout, e.status))
end
