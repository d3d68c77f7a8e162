//! The status page of the metrics listener (`/`): what an operator reads first, in plain
//! HTML and CSS that refreshes itself. It only renders: the listener (`engine::metrics`)
//! samples the blocks into [`Rates`] and serves the page.

use std::fmt::Write as _;
use std::time::Instant;

use crate::engine::stats::Snapshot;

/// Samples kept: the rate is over the last this-many seconds.
const SAMPLES: usize = 11;

/// Request counts over time, per slot, for the rate.
#[derive(Default)]
pub struct Rates {
    samples: std::collections::VecDeque<(Instant, Vec<(usize, u64)>)>,
}

impl Rates {
    pub fn sample(&mut self, now: Instant, snaps: &[(usize, Snapshot)]) {
        self.samples
            .push_back((now, snaps.iter().map(|(i, s)| (*i, s.requests)).collect()));
        while self.samples.len() > SAMPLES {
            self.samples.pop_front();
        }
    }

    /// Requests per second of slot `slot` since the oldest sample.
    pub fn rate(&self, now: Instant, slot: usize, requests: u64) -> f64 {
        let Some((t, counts)) = self.samples.front() else {
            return 0.0;
        };
        let then = counts.iter().find(|(i, _)| *i == slot).map_or(0, |c| c.1);
        let dt = now.duration_since(*t).as_secs_f64();
        if dt < 0.5 {
            return 0.0;
        }
        requests.saturating_sub(then) as f64 / dt
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| format!("{:.1}", s * 1000.0))
}

/// The status page: plain HTML and CSS, refreshing itself every 2 seconds.
pub fn render_status(
    snaps: &[(usize, Snapshot)],
    rates: &Rates,
    now: Instant,
    ident: &str,
) -> String {
    let mut total = Snapshot::default();
    let mut rate = 0.0;
    for (i, s) in snaps {
        rate += rates.rate(now, *i, s.requests);
        total.requests += s.requests;
        total.in_flight += s.in_flight;
        total.threads += s.threads;
        total.threads_busy += s.threads_busy;
        total.queue_depth += s.queue_depth;
        total.open_connections += s.open_connections;
        total.bytes_read += s.bytes_read;
        total.bytes_written += s.bytes_written;
        for (b, n) in s.duration_buckets.iter().enumerate() {
            total.duration_buckets[b] += n;
        }
        for (m, row) in s.by_method_class.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                total.by_method_class[m][c] += v;
            }
        }
    }
    let classes = total.by_class();
    let mut h = String::with_capacity(4096);
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="2">
<title>{ident} status</title>
<style>
body{{font-family:system-ui,sans-serif;margin:0;padding:1em;background:#f6f6f4;color:#222}}
h1{{font-size:1.3em;margin:0 0 .6em}}
.grid{{display:grid;grid-template-columns:repeat(auto-fit,minmax(9em,1fr));gap:.6em}}
.card{{background:#fff;border-radius:.5em;padding:.7em;box-shadow:0 1px 2px #0002}}
.card .v{{font-size:1.6em;font-weight:600}}
.card .k{{font-size:.8em;color:#666}}
table{{border-collapse:collapse;width:100%;margin-top:1em;background:#fff;font-size:.9em}}
th,td{{padding:.35em .5em;text-align:right;border-bottom:1px solid #eee}}
th:first-child,td:first-child{{text-align:left}}
.wrap{{overflow-x:auto}}
@media (max-width:600px){{table{{font-size:.72em}}th,td{{padding:.3em .2em}}}}
</style></head><body>
<h1>{ident} &middot; status</h1>
<div class="grid">
<div class="card"><div class="v" id="rate">{rate:.1}</div><div class="k">requests/s (last 10 s)</div></div>
<div class="card"><div class="v" id="requests">{req}</div><div class="k">requests</div></div>
<div class="card"><div class="v"><span id="threads-busy">{busy}</span>/<span id="threads">{threads}</span></div><div class="k">threads busy</div></div>
<div class="card"><div class="v" id="queue">{queue}</div><div class="k">queued</div></div>
<div class="card"><div class="v" id="in-flight">{inflight}</div><div class="k">in flight</div></div>
<div class="card"><div class="v" id="connections">{conns}</div><div class="k">connections</div></div>
<div class="card"><div class="v" id="p50">{p50}</div><div class="k">p50 ms</div></div>
<div class="card"><div class="v" id="p90">{p90}</div><div class="k">p90 ms</div></div>
<div class="card"><div class="v" id="p99">{p99}</div><div class="k">p99 ms</div></div>
</div>
<div class="wrap"><table id="classes"><tr><th>status</th><th>1xx</th><th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th></tr>
<tr><td>requests</td><td id="c1xx">{c1}</td><td id="c2xx">{c2}</td><td id="c3xx">{c3}</td><td id="c4xx">{c4}</td><td id="c5xx">{c5}</td></tr></table></div>
<div class="wrap"><table id="workers"><tr><th>worker</th><th>pid</th><th>req/s</th><th>requests</th><th>busy</th><th>queue</th><th>conns</th><th>p50 ms</th><th>p99 ms</th></tr>
"#,
        req = total.requests,
        busy = total.threads_busy,
        threads = total.threads,
        queue = total.queue_depth,
        inflight = total.in_flight,
        conns = total.open_connections,
        p50 = ms(total.quantile(0.5)),
        p90 = ms(total.quantile(0.9)),
        p99 = ms(total.quantile(0.99)),
        c1 = classes[0],
        c2 = classes[1],
        c3 = classes[2],
        c4 = classes[3],
        c5 = classes[4],
    );
    for (i, s) in snaps {
        let _ = writeln!(
            h,
            "<tr class=\"worker\"><td>{i}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s.pid,
            rates.rate(now, *i, s.requests),
            s.requests,
            s.threads_busy,
            s.threads,
            s.queue_depth,
            s.open_connections,
            ms(s.quantile(0.5)),
            ms(s.quantile(0.99)),
        );
    }
    h.push_str(
        "</table></div>\n<p class=\"k\"><a href=\"/metrics\">/metrics</a></p>\n</body></html>\n",
    );
    h
}
