//! The status page of the metrics listener (`/`, and the same figures as JSON at
//! `/status.json`): what an operator reads first. Plain HTML and CSS that refreshes
//! itself; no script (one runs only under `?check`, for a test to measure the layout).
//!
//! The listener (`engine::metrics`) samples every live block into [`Rates`] once a
//! second and keeps a minute of samples: rates, the error share and the latency
//! percentiles are the difference between now and a sample (a window, labelled as
//! such), not everything since the worker started, which hides a bad minute behind
//! hours of good ones. A request is counted when it ends: one still running shows as
//! busy threads, and for how long every thread has been busy.
//!
//! Totals (requests by class) are since each worker started: the master's map keeps
//! no count of the workers it retired.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::engine::process_stats::{self, Process};
use crate::engine::stats::{restart_reason, Snapshot, CLASSES};

/// Percentiles and the error share are over this much of the recent past.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Request and byte rates are over this much.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);
/// Samples kept: one a second over [`WINDOW`], and the one that starts it.
const SAMPLES: usize = 61;
/// A sample this much older than a window's span still starts it (samples are a
/// second apart, give or take the listener's poll).
const SLACK: Duration = Duration::from_millis(500);
/// The 5xx share above which the error rate is shown as bad.
const ERROR_SHARE_BAD: f64 = 0.01;

/// Recent snapshots of every live slot, a second apart, for the windows.
#[derive(Default)]
pub struct Rates {
    samples: VecDeque<(Instant, Vec<(usize, Snapshot)>)>,
}

impl Rates {
    pub fn sample(&mut self, now: Instant, snaps: &[(usize, Snapshot)]) {
        self.samples.push_back((now, snaps.to_vec()));
        while self.samples.len() > SAMPLES {
            self.samples.pop_front();
        }
    }

    /// The oldest sample no older than `span` (and the time it was taken).
    fn start_of(&self, now: Instant, span: Duration) -> Option<&(Instant, Vec<(usize, Snapshot)>)> {
        self.samples
            .iter()
            .find(|(t, _)| now.saturating_duration_since(*t) <= span + SLACK)
    }

    /// What slot `slot` (now `cur`) did over the last `span`: the difference from the
    /// sample that starts it, or everything since the worker started when no sample
    /// of this worker is that old.
    pub fn window(&self, now: Instant, span: Duration, slot: usize, cur: &Snapshot) -> Window {
        let uptime = uptime_of(cur);
        let base = self.start_of(now, span).and_then(|(t, snaps)| {
            let s = snaps.iter().find(|(i, _)| *i == slot)?;
            // Another worker in the slot since: its counters started from zero.
            (s.1.pid == cur.pid && s.1.started_ms == cur.started_ms).then_some((*t, &s.1))
        });
        match base {
            Some((t, old)) => Window::between(old, cur, now.saturating_duration_since(t)),
            None => Window::between(&Snapshot::default(), cur, uptime.min(span)),
        }
    }

    /// For how long every thread of slot `slot` (now `cur`) has been busy, to the
    /// second; None if one is idle now.
    pub fn all_busy_for(&self, now: Instant, slot: usize, cur: &Snapshot) -> Option<Duration> {
        if !saturated(cur) {
            return None;
        }
        let mut since = now;
        for (t, snaps) in self.samples.iter().rev() {
            match snaps.iter().find(|(i, _)| *i == slot) {
                Some((_, s)) if saturated(s) && s.pid == cur.pid => since = *t,
                _ => break,
            }
        }
        Some(now.saturating_duration_since(since))
    }
}

fn saturated(s: &Snapshot) -> bool {
    s.threads > 0 && s.threads_busy >= s.threads
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn uptime_of(s: &Snapshot) -> Duration {
    if s.started_ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64((unix_now() - s.started_ms as f64 / 1000.0).max(0.0))
}

/// What happened over a window: the counters' differences and its length.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub seconds: f64,
    pub delta: Snapshot,
}

impl Window {
    fn between(old: &Snapshot, cur: &Snapshot, span: Duration) -> Window {
        let mut d = Snapshot {
            requests: cur.requests.saturating_sub(old.requests),
            bytes_read: cur.bytes_read.saturating_sub(old.bytes_read),
            bytes_written: cur.bytes_written.saturating_sub(old.bytes_written),
            ..Snapshot::default()
        };
        for (b, n) in cur.duration_buckets.iter().enumerate() {
            d.duration_buckets[b] = n.saturating_sub(old.duration_buckets[b]);
        }
        for (m, row) in cur.by_method_class.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                d.by_method_class[m][c] = v.saturating_sub(old.by_method_class[m][c]);
            }
        }
        Window {
            seconds: span.as_secs_f64(),
            delta: d,
        }
    }

    fn add(&mut self, other: &Window) {
        self.seconds = self.seconds.max(other.seconds);
        let (d, o) = (&mut self.delta, &other.delta);
        d.requests += o.requests;
        d.bytes_read += o.bytes_read;
        d.bytes_written += o.bytes_written;
        for (b, n) in o.duration_buckets.iter().enumerate() {
            d.duration_buckets[b] += n;
        }
        for (m, row) in o.by_method_class.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                d.by_method_class[m][c] += v;
            }
        }
    }

    fn per_second(&self, n: u64) -> f64 {
        if self.seconds < 0.5 {
            0.0
        } else {
            n as f64 / self.seconds
        }
    }

    /// The share of answers that were 5xx; None without answers.
    pub fn error_share(&self) -> Option<f64> {
        let classes = self.delta.by_class();
        let all: u64 = classes.iter().sum();
        (all > 0).then(|| classes[4] as f64 / all as f64)
    }
}

/// One worker's line: its figures now, its windows, and its process.
struct Row<'a> {
    slot: usize,
    snap: &'a Snapshot,
    recent: Window,
    rate: Window,
    busy_for: Option<Duration>,
    process: Option<Process>,
}

/// Everything the page and its JSON show, worked out once.
struct Status<'a> {
    ident: &'a str,
    started: f64,
    rows: Vec<Row<'a>>,
    total: Snapshot,
    recent: Window,
    rate: Window,
    busy_for: Option<Duration>,
    /// The process serving this page (the master, or the only process).
    own: Option<Process>,
}

impl<'a> Status<'a> {
    fn new(snaps: &'a [(usize, Snapshot)], rates: &Rates, now: Instant, ident: &'a str) -> Self {
        let mut total = Snapshot::default();
        let mut recent = Window::default();
        let mut rate = Window::default();
        let mut rows = Vec::new();
        for (i, s) in snaps {
            let row = Row {
                slot: *i,
                snap: s,
                recent: rates.window(now, WINDOW, *i, s),
                rate: rates.window(now, RATE_WINDOW, *i, s),
                busy_for: rates.all_busy_for(now, *i, s),
                process: process_stats::read(s.pid),
            };
            recent.add(&row.recent);
            rate.add(&row.rate);
            total.requests += s.requests;
            total.in_flight += s.in_flight;
            total.threads += s.threads;
            total.threads_busy += s.threads_busy;
            total.threads_stuck += s.threads_stuck;
            total.queue_depth += s.queue_depth;
            total.open_connections += s.open_connections;
            total.connection_limit += s.connection_limit;
            total.bytes_read += s.bytes_read;
            total.bytes_written += s.bytes_written;
            total.restarts += s.restarts;
            for (m, row) in s.by_method_class.iter().enumerate() {
                for (c, v) in row.iter().enumerate() {
                    total.by_method_class[m][c] += v;
                }
            }
            rows.push(row);
        }
        // Every thread busy: as long as the worker that has been so the shortest.
        let busy_for = if rows.is_empty() {
            None
        } else {
            rows.iter()
                .map(|r| r.busy_for)
                .collect::<Option<Vec<_>>>()
                .and_then(|v| v.into_iter().min())
        };
        let own = process_stats::read(std::process::id() as u64);
        let started = own
            .as_ref()
            .map(|p| p.start_time_seconds)
            .unwrap_or_else(|| {
                snaps
                    .iter()
                    .map(|(_, s)| s.started_ms)
                    .filter(|&m| m > 0)
                    .min()
                    .map_or(0.0, |m| m as f64 / 1000.0)
            });
        Status {
            ident,
            started,
            rows,
            total,
            recent,
            rate,
            busy_for,
            own,
        }
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| format!("{:.1}", s * 1000.0))
}

/// `1.2 MB`-style sizes (powers of 1024, as `ls -h`).
fn size(n: f64) -> String {
    let mut n = n;
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if n < 1024.0 {
            return if unit == "B" {
                format!("{n:.0} {unit}")
            } else {
                format!("{n:.1} {unit}")
            };
        }
        n /= 1024.0;
    }
    format!("{n:.1} TiB")
}

fn duration(d: f64) -> String {
    let s = d as u64;
    match s {
        0..=99 => format!("{s} s"),
        100..=5999 => format!("{}m {:02}s", s / 60, s % 60),
        6000..=172_799 => format!("{}h {:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d {:02}h", s / 86400, s / 3600 % 24),
    }
}

/// `2026-12-07 18:37:02 UTC` for seconds since the epoch.
fn utc(t: f64) -> String {
    let secs = t.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// HTML-escapes `s` (the ident is the operator's, but still text).
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A class for a figure past a threshold: `bad`, `warn` or none.
fn level(bad: bool, warn: bool) -> &'static str {
    if bad {
        " bad"
    } else if warn {
        " warn"
    } else {
        ""
    }
}

fn pct(share: Option<f64>) -> String {
    share.map_or("-".into(), |s| format!("{:.2}", s * 100.0))
}

const STYLE: &str = "
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:0;padding:.8em;background:#f6f6f4;color:#222}
h1{font-size:1.25em;margin:0 0 .2em}
h2{font-size:1em;margin:1.2em 0 .4em}
p.sub{margin:0 0 .8em;color:#555;font-size:.85em}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(8.5em,1fr));gap:.5em}
.card{background:#fff;border-radius:.5em;padding:.6em;box-shadow:0 1px 2px #0002;border-left:.3em solid #fff;min-width:0}
.card .v{font-size:1.45em;font-weight:600;overflow-wrap:anywhere}
.k{font-size:.78em;color:#666}
.warn{border-left-color:#e3a008;background:#fff8e6}
.bad{border-left-color:#d33;background:#fdecec}
td.warn,td.bad{border-left:0}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.88em}
th,td{padding:.35em .45em;text-align:right;border-bottom:1px solid #eee}
th:first-child,td:first-child{text-align:left}
@media (max-width:700px){
#workers,#workers tbody{display:block}
#workers tr:first-child{display:none}
#workers tr.worker{display:flex;flex-wrap:wrap;gap:.1em .8em;padding:.5em;border-bottom:2px solid #ddd}
#workers td{border:0;padding:0;text-align:left}
#workers td::before{color:#666;font-size:.85em;margin-right:.25em}
#workers td:nth-child(1)::before{content:'worker'}
#workers td:nth-child(2)::before{content:'pid'}
#workers td:nth-child(3)::before{content:'req/s'}
#workers td:nth-child(4)::before{content:'requests'}
#workers td:nth-child(5)::before{content:'busy'}
#workers td:nth-child(6)::before{content:'queue'}
#workers td:nth-child(7)::before{content:'conns'}
#workers td:nth-child(8)::before{content:'p50 ms'}
#workers td:nth-child(9)::before{content:'p99 ms'}
#workers td:nth-child(10)::before{content:'5xx %'}
#workers td:nth-child(11)::before{content:'RSS'}
#workers td:nth-child(12)::before{content:'CPU s'}
#workers td:nth-child(13)::before{content:'up'}
#workers td:nth-child(14)::before{content:'restarts'}
#workers td:nth-child(15)::before{content:'last restart'}
}
";

/// Under `?check`: the page measures itself and writes whether it fits its width into
/// the DOM, for a headless browser's `--dump-dom`, and tells the page framing it (a
/// test frames it at a phone's width: headless windows are wider than phones).
const CHECK: &str = "<script>addEventListener('load',function(){var d=document.documentElement;\
var e=document.createElement('pre');e.id='layout-check';\
e.textContent='scrollWidth='+d.scrollWidth+' innerWidth='+innerWidth+' fits='+(d.scrollWidth<=innerWidth);\
document.body.appendChild(e);if(parent!==window)parent.postMessage(e.textContent,'*')})</script>";

/// The status page: plain HTML and CSS, refreshing itself every 2 seconds. `target` is
/// the request target (`?check` adds the layout check).
pub fn render_status(
    snaps: &[(usize, Snapshot)],
    rates: &Rates,
    now: Instant,
    ident: &str,
    target: &[u8],
) -> String {
    let st = Status::new(snaps, rates, now, ident);
    let check = target.ends_with(b"?check");
    let t = &st.total;
    let classes = t.by_class();
    let error_share = st.recent.error_share();
    let ident = esc(st.ident);
    let up = unix_now() - st.started;
    let mut h = String::with_capacity(8192);
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{refresh}<title>{ident} status</title>
<style>{STYLE}</style></head><body>
<h1>{ident} &middot; status</h1>
<p class="sub">maitre <span id="version">{version}</span> &middot; up <span id="uptime">{uptime}</span> &middot; since <span id="started">{started}</span></p>
<div class="grid">
<div class="card{busy_c}"><div class="v"><span id="threads-busy">{busy}</span>/<span id="threads">{threads}</span></div><div class="k">threads busy{busy_for}</div></div>
<div class="card{queue_c}"><div class="v" id="queue">{queue}</div><div class="k">queued</div></div>
<div class="card"><div class="v" id="in-flight">{inflight}</div><div class="k">in flight</div></div>
<div class="card{conns_c}"><div class="v"><span id="connections">{conns}</span>/<span id="connection-limit">{limit}</span></div><div class="k">connections / limit</div></div>
<div class="card"><div class="v" id="rate">{rate:.1}</div><div class="k">requests/s (last 10 s)</div></div>
<div class="card"><div class="v" id="bytes-in">{bin}</div><div class="k">received/s (last 10 s)</div></div>
<div class="card"><div class="v" id="bytes-out">{bout}</div><div class="k">sent/s (last 10 s)</div></div>
<div class="card{err_c}"><div class="v" id="error-rate">{err}</div><div class="k">5xx % (last minute)</div></div>
<div class="card"><div class="v" id="p50">{p50}</div><div class="k">p50 ms (last minute)</div></div>
<div class="card"><div class="v" id="p90">{p90}</div><div class="k">p90 ms (last minute)</div></div>
<div class="card"><div class="v" id="p99">{p99}</div><div class="k">p99 ms (last minute)</div></div>
<div class="card"><div class="v" id="window-requests">{wreq}</div><div class="k">requests (last minute)</div></div>
<div class="card"><div class="v" id="rss">{rss}</div><div class="k">memory (RSS, all workers)</div></div>
<div class="card"><div class="v" id="cpu">{cpu:.1}</div><div class="k">CPU seconds (all workers)</div></div>
</div>
<h2>Since each worker started</h2>
<div class="grid">
<div class="card"><div class="v" id="requests">{req}</div><div class="k">requests</div></div>
"#,
        refresh = if check {
            ""
        } else {
            "<meta http-equiv=\"refresh\" content=\"2\">\n"
        },
        version = env!("CARGO_PKG_VERSION"),
        uptime = duration(up),
        started = utc(st.started),
        busy_c = level(t.threads > 0 && t.threads_busy >= t.threads, false),
        busy = t.threads_busy,
        threads = t.threads,
        busy_for = st.busy_for.map_or(String::new(), |d| format!(
            " &middot; all for <span id=\"all-busy-for\">{}</span>",
            duration(d.as_secs_f64())
        )) + &if t.threads_stuck > 0 {
            format!(
                " &middot; <span id=\"threads-stuck\">{}</span> stuck past request_timeout",
                t.threads_stuck
            )
        } else {
            String::new()
        },
        queue_c = level(false, t.queue_depth > 0),
        queue = t.queue_depth,
        inflight = t.in_flight,
        conns_c = level(
            t.connection_limit > 0 && t.open_connections >= t.connection_limit,
            t.connection_limit > 0 && t.open_connections * 10 >= t.connection_limit * 9,
        ),
        conns = t.open_connections,
        limit = t.connection_limit,
        rate = st.rate.per_second(st.rate.delta.requests),
        bin = size(st.rate.per_second(st.rate.delta.bytes_read)),
        bout = size(st.rate.per_second(st.rate.delta.bytes_written)),
        err_c = level(
            error_share.is_some_and(|e| e > ERROR_SHARE_BAD),
            error_share.is_some_and(|e| e > 0.0)
        ),
        err = pct(error_share),
        p50 = ms(st.recent.delta.quantile(0.5)),
        p90 = ms(st.recent.delta.quantile(0.9)),
        p99 = ms(st.recent.delta.quantile(0.99)),
        wreq = st.recent.delta.requests,
        rss = size(
            st.rows
                .iter()
                .filter_map(|r| r.process.as_ref())
                .map(|p| p.resident_memory_bytes as f64)
                .sum()
        ),
        cpu = st
            .rows
            .iter()
            .filter_map(|r| r.process.as_ref())
            .map(|p| p.cpu_seconds)
            .sum::<f64>(),
        req = t.requests,
    );
    for (c, n) in CLASSES.iter().zip(classes) {
        let cls = level(*c == "5xx" && n > 0, false);
        let _ = writeln!(
            h,
            "<div class=\"card{cls}\"><div class=\"v\" id=\"c{c}\">{n}</div><div class=\"k\">{c}</div></div>"
        );
    }
    let _ = write!(
        h,
        "<div class=\"card\"><div class=\"v\" id=\"restarts\">{}</div><div class=\"k\">worker restarts</div></div>\n</div>\n<h2>Workers</h2>\n<table id=\"workers\"><tr><th>worker</th><th>pid</th><th>req/s</th><th>requests</th><th>busy</th><th>queue</th><th>conns</th><th>p50 ms</th><th>p99 ms</th><th>5xx %</th><th>RSS</th><th>CPU s</th><th>up</th><th>restarts</th><th>last restart</th></tr>\n",
        t.restarts
    );
    for r in &st.rows {
        let s = r.snap;
        let share = r.recent.error_share();
        let _ = writeln!(
            h,
            "<tr class=\"worker\"><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td class=\"{}\">{}/{}</td><td class=\"{}\">{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.slot,
            s.pid,
            r.rate.per_second(r.rate.delta.requests),
            s.requests,
            level(saturated(s), false).trim(),
            s.threads_busy,
            s.threads,
            level(false, s.queue_depth > 0).trim(),
            s.queue_depth,
            s.open_connections,
            s.connection_limit,
            ms(r.recent.delta.quantile(0.5)),
            ms(r.recent.delta.quantile(0.99)),
            level(share.is_some_and(|e| e > ERROR_SHARE_BAD), false).trim(),
            pct(share),
            r.process.as_ref().map_or("-".into(), |p| size(p.resident_memory_bytes as f64)),
            r.process.as_ref().map_or("-".into(), |p| format!("{:.1}", p.cpu_seconds)),
            duration(uptime_of(s).as_secs_f64()),
            s.restarts,
            restart_reason(s.last_restart_reason).map_or("-", |r| r.1),
        );
    }
    let own = st.own.as_ref().map_or(String::new(), |p| {
        format!(
            " &middot; this process: {} RSS, {:.1} CPU s, {} of {} descriptors",
            size(p.resident_memory_bytes as f64),
            p.cpu_seconds,
            p.open_fds.map_or("-".into(), |n| n.to_string()),
            p.max_fds.map_or("unlimited".into(), |n| n.to_string()),
        )
    });
    let _ = write!(
        h,
        "</table>\n<p class=\"k\">Percentiles, 5xx share and request count: the last minute (or since start when younger); totals: since each worker started. <a href=\"/metrics\">/metrics</a> &middot; <a href=\"/status.json\">/status.json</a>{own}</p>\n{}</body></html>\n",
        if check { CHECK } else { "" }
    );
    h
}

/// A JSON string literal of `s`.
fn js(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number, or null.
fn num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "null".into(),
    }
}

fn window_json(w: &Window) -> String {
    let classes = w.delta.by_class();
    format!(
        "{{\"seconds\":{},\"requests\":{},\"requests_5xx\":{},\"error_rate\":{},\"p50_seconds\":{},\"p90_seconds\":{},\"p99_seconds\":{},\"requests_per_second\":{},\"received_bytes_per_second\":{},\"sent_bytes_per_second\":{}}}",
        num(Some(w.seconds)),
        w.delta.requests,
        classes[4],
        num(w.error_share()),
        num(w.delta.quantile(0.5)),
        num(w.delta.quantile(0.9)),
        num(w.delta.quantile(0.99)),
        num(Some(w.per_second(w.delta.requests))),
        num(Some(w.per_second(w.delta.bytes_read))),
        num(Some(w.per_second(w.delta.bytes_written))),
    )
}

fn process_json(p: Option<&Process>) -> String {
    p.map_or("null".into(), |p| {
        format!(
            "{{\"resident_memory_bytes\":{},\"virtual_memory_bytes\":{},\"cpu_seconds_total\":{},\"start_time_seconds\":{},\"open_fds\":{},\"max_fds\":{}}}",
            p.resident_memory_bytes,
            p.virtual_memory_bytes,
            num(Some(p.cpu_seconds)),
            num(Some(p.start_time_seconds)),
            num(p.open_fds.map(|n| n as f64)),
            num(p.max_fds.map(|n| n as f64)),
        )
    })
}

fn totals_json(s: &Snapshot) -> String {
    let classes = s.by_class();
    let mut out = format!(
        "{{\"since\":\"worker start\",\"requests\":{},\"received_bytes\":{},\"sent_bytes\":{},\"by_status\":{{",
        s.requests, s.bytes_read, s.bytes_written
    );
    for (i, (c, n)) in CLASSES.iter().zip(classes).enumerate() {
        let _ = write!(out, "{}\"{c}\":{n}", if i > 0 { "," } else { "" });
    }
    out.push_str("}}");
    out
}

/// The same figures as the page, as JSON (`/status.json`): times in seconds, sizes in
/// bytes, shares from 0 to 1; `recent` is the last minute, `rate` the last 10 s.
pub fn render_status_json(
    snaps: &[(usize, Snapshot)],
    rates: &Rates,
    now: Instant,
    ident: &str,
) -> String {
    let st = Status::new(snaps, rates, now, ident);
    let t = &st.total;
    let mut j = String::with_capacity(4096);
    let _ = write!(
        j,
        "{{\"ident\":{},\"version\":{},\"now\":{},\"start_time_seconds\":{},\"uptime_seconds\":{},\"threads\":{},\"threads_busy\":{},\"threads_stuck\":{},\"all_threads_busy_seconds\":{},\"queue_depth\":{},\"in_flight\":{},\"open_connections\":{},\"connection_limit\":{},\"max_queued_requests\":null,\"restarts\":{},\"recent\":{},\"rate\":{},\"totals\":{},\"process\":{},\"workers\":[",
        js(st.ident),
        js(env!("CARGO_PKG_VERSION")),
        num(Some(unix_now())),
        num(Some(st.started)),
        num(Some(unix_now() - st.started)),
        t.threads,
        t.threads_busy,
        t.threads_stuck,
        num(st.busy_for.map(|d| d.as_secs_f64())),
        t.queue_depth,
        t.in_flight,
        t.open_connections,
        t.connection_limit,
        t.restarts,
        window_json(&st.recent),
        window_json(&st.rate),
        totals_json(t),
        process_json(st.own.as_ref()),
    );
    for (n, r) in st.rows.iter().enumerate() {
        let s = r.snap;
        let _ = write!(
            j,
            "{}{{\"worker\":{},\"pid\":{},\"start_time_seconds\":{},\"uptime_seconds\":{},\"restarts\":{},\"last_restart_reason\":{},\"threads\":{},\"threads_busy\":{},\"threads_stuck\":{},\"all_threads_busy_seconds\":{},\"queue_depth\":{},\"in_flight\":{},\"open_connections\":{},\"connection_limit\":{},\"recent\":{},\"rate\":{},\"totals\":{},\"process\":{}}}",
            if n > 0 { "," } else { "" },
            r.slot,
            s.pid,
            num(Some(s.started_ms as f64 / 1000.0)),
            num(Some(uptime_of(s).as_secs_f64())),
            s.restarts,
            restart_reason(s.last_restart_reason).map_or("null".into(), |r| js(r.0)),
            s.threads,
            s.threads_busy,
            s.threads_stuck,
            num(r.busy_for.map(|d| d.as_secs_f64())),
            s.queue_depth,
            s.in_flight,
            s.open_connections,
            s.connection_limit,
            window_json(&r.recent),
            window_json(&r.rate),
            totals_json(s),
            process_json(r.process.as_ref()),
        );
    }
    j.push_str("]}\n");
    j
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::stats::{method_index, Stats};

    fn snap(stats: &Stats) -> Vec<(usize, Snapshot)> {
        vec![(0, stats.snapshot())]
    }

    #[test]
    fn the_window_keeps_recent_requests_and_drops_older_ones() {
        let s = Stats::owned();
        s.init(1, 1);
        let get = method_index(b"GET");
        let mut rates = Rates::default();
        let t0 = Instant::now();
        rates.sample(t0, &snap(&s));
        // Slow ones first, then a minute and more of fast ones.
        for _ in 0..5 {
            s.record(get, 500, Duration::from_secs(9), 10);
        }
        let mut t = t0;
        for _ in 0..30 {
            t += Duration::from_secs(1);
            rates.sample(t, &snap(&s));
        }
        let now = t + Duration::from_millis(300);
        let w = rates.window(now, WINDOW, 0, &s.snapshot());
        assert_eq!(w.delta.requests, 5);
        assert!(w.delta.quantile(0.99).unwrap() >= 5.0, "{w:?}");
        assert_eq!(w.error_share(), Some(1.0));
        for _ in 0..61 {
            t += Duration::from_secs(1);
            s.record(get, 200, Duration::from_micros(200), 10);
            rates.sample(t, &snap(&s));
        }
        let now = t + Duration::from_millis(300);
        let w = rates.window(now, WINDOW, 0, &s.snapshot());
        assert!(w.delta.requests <= 61 && w.delta.requests >= 59, "{w:?}");
        assert!(w.delta.quantile(0.99).unwrap() < 0.001, "{w:?}");
        assert_eq!(w.error_share(), Some(0.0));
        assert!((w.seconds - 60.3).abs() < 0.01, "{w:?}");
        // The whole life still has them.
        assert!(s.snapshot().quantile(0.99).unwrap() >= 5.0);
    }

    #[test]
    fn a_new_worker_in_a_slot_starts_its_window_from_zero() {
        let s = Stats::owned();
        s.init(1, 1);
        let mut rates = Rates::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            s.record(0, 200, Duration::from_millis(1), 1);
        }
        rates.sample(t0, &snap(&s));
        s.init(2, 1);
        s.record(0, 200, Duration::from_millis(1), 1);
        let w = rates.window(t0 + Duration::from_secs(1), WINDOW, 0, &s.snapshot());
        assert_eq!(w.delta.requests, 1);
    }

    #[test]
    fn all_threads_busy_is_timed_from_the_samples() {
        let s = Stats::owned();
        s.init(1, 1);
        s.threads.store(2, std::sync::atomic::Ordering::Relaxed);
        let mut rates = Rates::default();
        let t0 = Instant::now();
        rates.sample(t0, &snap(&s));
        s.threads_busy
            .store(2, std::sync::atomic::Ordering::Relaxed);
        for n in 1..=9 {
            rates.sample(t0 + Duration::from_secs(n), &snap(&s));
        }
        let now = t0 + Duration::from_secs(9);
        let busy = rates.all_busy_for(now, 0, &s.snapshot()).unwrap();
        assert_eq!(busy, Duration::from_secs(8));
        s.threads_busy
            .store(1, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(rates.all_busy_for(now, 0, &s.snapshot()), None);
    }

    #[test]
    fn page_and_json_carry_the_figures() {
        let s = Stats::owned();
        s.init(std::process::id(), 1);
        s.threads.store(4, std::sync::atomic::Ordering::Relaxed);
        s.connection_limit
            .store(100, std::sync::atomic::Ordering::Relaxed);
        s.record(0, 503, Duration::from_millis(3), 10);
        let rates = Rates::default();
        let now = Instant::now();
        let page = render_status(&snap(&s), &rates, now, "x<y", b"/?check");
        assert!(page.contains("id=\"connection-limit\">100<"), "{page}");
        assert!(page.contains("x&lt;y"));
        assert!(page.contains("layout-check") && !page.contains("http-equiv"));
        assert!(page.contains("class=\"card bad\"><div class=\"v\" id=\"error-rate\">100.00<"));
        let plain = render_status(&snap(&s), &rates, now, "x", b"/");
        assert!(!plain.contains("<script") && plain.contains("http-equiv=\"refresh\""));
        let json = render_status_json(&snap(&s), &rates, now, "x\"");
        assert!(json.starts_with("{\"ident\":\"x\\\"\""), "{json}");
        assert!(json.contains("\"connection_limit\":100"));
        assert!(json.contains("\"requests_5xx\":1"));
        assert!(json.contains("\"last_restart_reason\":null"), "{json}");
        assert!(plain.contains("<th>last restart</th>"));
        s.last_restart_reason
            .store(2, std::sync::atomic::Ordering::Relaxed);
        let json = render_status_json(&snap(&s), &rates, now, "x");
        assert!(
            json.contains("\"last_restart_reason\":\"worker_timeout\""),
            "{json}"
        );
        let page = render_status(&snap(&s), &rates, now, "x", b"/");
        assert!(page.contains("<td>timed out</td></tr>"), "{page}");
    }

    #[test]
    fn dates_and_durations() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_668_622.0), "2026-12-07 18:37:02 UTC");
        assert_eq!(duration(42.0), "42 s");
        assert_eq!(duration(3725.0), "62m 05s");
        assert_eq!(duration(90_000.0), "25h 00m");
        assert_eq!(size(2048.0), "2.0 KiB");
    }
}
