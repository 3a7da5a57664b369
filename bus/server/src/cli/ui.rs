//! `ipcbus ui`: checks that the server takes the token, prints the
//! dashboard's URL (the token in its fragment) and opens a browser on it
//! where there is one.

use super::CliError;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `ipcbus ui`: `url` is the server's WebSocket URL (`--url`).
pub(super) fn run(
    url: &str,
    token: Option<String>,
    token_file: Option<&Path>,
    no_open: bool,
) -> Result<(), CliError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Connecting first: a server that is down or refuses the token is
    // reported here, with the CLI's usual hints, rather than by the page.
    let (found, _) = super::connect::find_token(token.clone(), token_file)?;
    drop(rt.block_on(super::connect::connect(url, token, token_file, &[]))?);
    let page = dashboard_url(url, found.as_deref())?;
    println!("{page}");
    if !no_open && !open_browser(&page) {
        eprintln!("no browser to open here: open the URL above yourself");
    }
    Ok(())
}

/// The dashboard's URL for the server at `ws_url` (`ws://host:port/ws`).
fn dashboard_url(ws_url: &str, token: Option<&str>) -> Result<String, CliError> {
    let (scheme, rest) = if let Some(rest) = ws_url.strip_prefix("ws://") {
        ("http", rest)
    } else if let Some(rest) = ws_url.strip_prefix("wss://") {
        ("https", rest)
    } else {
        return Err(CliError::Input(format!(
            "--url {ws_url:?} is not a ws:// or wss:// URL"
        )));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let base = format!("{scheme}://{authority}/ui/");
    Ok(crate::ui::with_token(base, token))
}

/// Asks the desktop to open `url` in the default browser. `false` when
/// there is no desktop or no launcher: never an error, the URL is printed.
fn open_browser(url: &str) -> bool {
    let mut command = if cfg!(target_os = "macos") {
        Command::new("open")
    } else if cfg!(windows) {
        // ShellExecute through explorer: no cmd.exe, which would expand `%`.
        Command::new("explorer")
    } else {
        // Without a display, xdg-open would start a text browser in this terminal.
        let desktop = ["DISPLAY", "WAYLAND_DISPLAY"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
        if !desktop {
            return false;
        }
        Command::new("xdg-open")
    };
    command
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_from_the_websocket_url() {
        let url = dashboard_url("ws://127.0.0.1:9100/ws", Some("ab")).expect("url");
        assert_eq!(url, "http://127.0.0.1:9100/ui/#token=ab");
        let url = dashboard_url("wss://bus.example/ws?x=1", None).expect("url");
        assert_eq!(url, "https://bus.example/ui/");
        assert!(dashboard_url("http://x/ws", None).is_err());
    }
}
