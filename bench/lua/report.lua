-- Appended to every wrk script by bench/run.sh: prints one machine-readable
-- line with the totals (wrk's own summary rounds the transfer rate).
done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%.0f bytes=%.0f duration_us=%.0f connect=%.0f read=%.0f"
         .. " write=%.0f status=%.0f timeout=%.0f p50_us=%.0f p99_us=%.0f\n",
      summary.requests, summary.bytes, summary.duration, e.connect, e.read,
      e.write, e.status, e.timeout, latency:percentile(50),
      latency:percentile(99)))
end
