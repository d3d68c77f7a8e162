-- POST an 8 MiB body (wrk.format adds its Content-Length); the app reads
-- wsgi.input fully and answers the length.
wrk.method = "POST"
wrk.body = string.rep("u", 8 * 1024 * 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
