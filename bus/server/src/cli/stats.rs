//! `ipcbus stats`: one line a second with the server's figures, read from
//! its `GET /metrics`, like `redis-cli --stat`: a header every
//! [`HEADER_EVERY`] lines, and rates computed from the counters.

use super::connect::{find_token, token_origin, SERVER_HINT, TOKEN_HINT};
use super::CliError;
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Lines between two headers.
const HEADER_EVERY: u64 = 20;
/// Time between two lines.
const INTERVAL: Duration = Duration::from_secs(1);
/// A scrape that takes longer than this counts as a server that does not answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest /metrics answer read (it is a few KiB).
const MAX_RESPONSE_BYTES: u64 = 1 << 20;

const HEADER: &str = "   conns    subs     keys  writes/s    dels/s   deliv/s   skips/s   outbox     rss   cpu%  refused";

/// One scrape: every sample's value by metric name, summed over labels.
type Sample = HashMap<String, f64>;

/// Prints a line per second until Ctrl-C, or `count` lines.
pub(super) async fn run(
    url: &str,
    token: Option<String>,
    token_file: Option<&std::path::Path>,
    count: Option<u64>,
) -> Result<(), CliError> {
    let (token, source) = find_token(token, token_file)?;
    let (host, port) = host_port(url)?;
    let mut out = std::io::stdout().lock();
    let mut ticks = tokio::time::interval(INTERVAL);
    let mut last: Option<(Instant, Sample)> = None;
    let mut lines = 0;
    while count.is_none_or(|n| lines < n) {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let body = match scrape(&host, port, token.as_deref()).await {
            Ok(body) => body,
            Err(Scrape::Refused(401)) => {
                let from = token_origin(&source);
                return Err(CliError::Input(format!(
                    "{url} refused the token (401); {from}. {TOKEN_HINT}"
                )));
            }
            Err(Scrape::Refused(status)) => {
                return Err(CliError::Input(format!(
                    "{url}: /metrics answered {status}"
                )))
            }
            Err(Scrape::Io(e)) => {
                return Err(CliError::Input(format!(
                    "cannot reach {host}:{port}: {e}; {SERVER_HINT}"
                )))
            }
        };
        let now = (Instant::now(), parse(&body));
        if lines.is_multiple_of(HEADER_EVERY) {
            writeln!(out, "{HEADER}")?;
        }
        writeln!(out, "{}", line(&now, last.as_ref()))?;
        out.flush()?;
        lines += 1;
        last = Some(now);
    }
    Ok(())
}

/// `ws://host:port/...` (the client commands' `--url`) to where /metrics is.
fn host_port(url: &str) -> Result<(String, u16), CliError> {
    let bad = || CliError::Input(format!("--url {url}: expected ws://HOST:PORT/ws"));
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
            (host, port.parse().map_err(|_| bad())?)
        }
        _ => (authority, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

enum Scrape {
    Io(std::io::Error),
    Refused(u16),
}

impl From<std::io::Error> for Scrape {
    fn from(e: std::io::Error) -> Scrape {
        Scrape::Io(e)
    }
}

/// One `GET /metrics` over plain HTTP/1.1; the body on a 200.
async fn scrape(host: &str, port: u16, token: Option<&str>) -> Result<String, Scrape> {
    let exchange = async {
        let mut tcp = TcpStream::connect((host, port)).await?;
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}Connection: close\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        tcp.take(MAX_RESPONSE_BYTES)
            .read_to_end(&mut response)
            .await?;
        Ok::<_, Scrape>(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(SCRAPE_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status != 200 {
        return Err(Scrape::Refused(status));
    }
    Ok(body.to_owned())
}

/// The samples of the text format, by name, summed over their labels.
fn parse(body: &str) -> Sample {
    let mut sample = Sample::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if let Ok(value) = value.parse::<f64>() {
            *sample.entry(name.to_owned()).or_default() += value;
        }
    }
    sample
}

fn line(now: &(Instant, Sample), last: Option<&(Instant, Sample)>) -> String {
    let get = |name: &str| now.1.get(name).copied().unwrap_or(0.0);
    // Per second since the last line; `-` on the first.
    let per_second = |name: &str, scale: f64| match last {
        Some((then, before)) => {
            let secs = now.0.duration_since(*then).as_secs_f64().max(f64::EPSILON);
            let delta = get(name) - before.get(name).copied().unwrap_or(0.0);
            format!("{:.0}", scale * delta.max(0.0) / secs)
        }
        None => "-".to_owned(),
    };
    let rate = |name: &str| per_second(name, 1.0);
    format!(
        "{:>8} {:>7} {:>8} {:>9} {:>9} {:>9} {:>9} {:>8} {:>7} {:>6} {:>8}",
        get("ipcbus_connections"),
        get("ipcbus_subscriptions"),
        get("ipcbus_keys"),
        rate("ipcbus_writes_total"),
        rate("ipcbus_deletes_total"),
        rate("ipcbus_deliveries_total"),
        rate("ipcbus_conflation_skips_total"),
        bytes(get("ipcbus_outbox_bytes")),
        bytes(get("process_resident_memory_bytes")),
        per_second("process_cpu_seconds_total", 100.0),
        get("ipcbus_refusals_total"),
    )
}

/// `812B`, `12.5K`, `7.9M`, `1.2G`.
fn bytes(n: f64) -> String {
    const UNITS: [&str; 4] = ["B", "K", "M", "G"];
    let mut n = n;
    let mut unit = 0;
    while n >= 1024.0 && unit + 1 < UNITS.len() {
        n /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n:.0}{}", UNITS[unit])
    } else {
        format!("{n:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_host_comes_from_the_client_url() {
        let hp = |u: &str| host_port(u).ok();
        assert_eq!(
            hp("ws://127.0.0.1:9099/ws"),
            Some(("127.0.0.1".into(), 9099))
        );
        assert_eq!(hp("ws://[::1]:8000/ws"), Some(("::1".into(), 8000)));
        assert_eq!(hp("ws://box/ws"), Some(("box".into(), 80)));
        assert_eq!(hp("wss://box/ws"), None);
    }

    #[test]
    fn samples_are_summed_over_labels_and_comments_skipped() {
        let s = parse("# HELP x y\nx_total{reason=\"a\"} 2\nx_total{reason=\"b\"} 3\ng 1.5\n");
        assert_eq!(s.get("x_total"), Some(&5.0));
        assert_eq!(s.get("g"), Some(&1.5));
        assert_eq!(bytes(8_300_000.0), "7.9M");
    }
}
