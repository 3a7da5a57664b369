//! The dashboard's files, embedded in the binary with `include_bytes!`:
//! the page (`page/`), the JavaScript client from `clients/js/src` (its
//! place in the repo, not a copy) and the vendored `@msgpack/msgpack` ESM
//! build (`vendor/msgpack/`). No npm at build time, nothing fetched at run time.

use std::collections::HashMap;
use std::sync::LazyLock;

/// The bare specifier the client imports; a browser without an import map
/// cannot resolve it, and an import map would be an inline script, which
/// the page's CSP forbids. The client's files are served with it pointed at
/// the vendored copy instead (the one change made to them).
const MSGPACK_SPECIFIER: &str = "\"@msgpack/msgpack\"";
/// Where the vendored build is, relative to `/ui/client/`.
const MSGPACK_VENDORED: &str = "\"../vendor/msgpack/index.mjs\"";

/// `(path under /ui/, contents)`, each list relative to this file.
macro_rules! files {
    ($prefix:literal, $dir:literal, [$($name:literal),* $(,)?]) => {
        &[$((concat!($prefix, $name), include_bytes!(concat!($dir, $name)) as &[u8])),*]
    };
}

const PAGE: &[(&str, &[u8])] = files!(
    "",
    "page/",
    [
        "index.html",
        "app.js",
        "login.js",
        "tree.js",
        "values.js",
        "editor.js",
        "nowplaying.js",
        "server.js",
        "chart.js",
        "style.css",
        "icon.svg",
    ]
);

/// Every file of `clients/js/src`; the test `every_client_file_is_embedded`
/// fails when one is added there and not here.
const CLIENT: &[(&str, &[u8])] = files!(
    "client/",
    "../../../../clients/js/src/",
    [
        "auth.js",
        "bus.js",
        "codec.js",
        "connection.js",
        "ephemeral.js",
        "errors.js",
        "index.js",
        "limits.js",
        "subscription.js",
        "value.js",
        "watch.js",
    ]
);

const MSGPACK: &[(&str, &[u8])] = files!(
    "vendor/msgpack/",
    "vendor/msgpack/",
    [
        "CachedKeyDecoder.mjs",
        "DecodeError.mjs",
        "Decoder.mjs",
        "Encoder.mjs",
        "ExtData.mjs",
        "ExtensionCodec.mjs",
        "context.mjs",
        "decode.mjs",
        "decodeAsync.mjs",
        "encode.mjs",
        "index.mjs",
        "timestamp.mjs",
        "utils/int.mjs",
        "utils/prettyByte.mjs",
        "utils/stream.mjs",
        "utils/typedArrays.mjs",
        "utils/utf8.mjs",
        "LICENSE",
    ]
);

/// One file as served.
pub(crate) struct Asset {
    /// The bytes.
    pub(crate) body: bytes::Bytes,
    /// Its `Content-Type`.
    pub(crate) content_type: &'static str,
}

/// Every file, by its path under `/ui/` (`index.html` for `/ui/`).
static ASSETS: LazyLock<HashMap<&'static str, Asset>> = LazyLock::new(|| {
    let mut assets = HashMap::new();
    for &(path, body) in PAGE.iter().chain(MSGPACK) {
        assets.insert(path, asset(path, bytes::Bytes::from_static(body)));
    }
    for &(path, body) in CLIENT {
        let body = match std::str::from_utf8(body) {
            Ok(text) if text.contains(MSGPACK_SPECIFIER) => {
                bytes::Bytes::from(text.replace(MSGPACK_SPECIFIER, MSGPACK_VENDORED))
            }
            _ => bytes::Bytes::from_static(body),
        };
        assets.insert(path, asset(path, body));
    }
    assets
});

fn asset(path: &str, body: bytes::Bytes) -> Asset {
    let content_type = match path.rsplit_once('.').map_or("", |(_, ext)| ext) {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        _ => "text/plain; charset=utf-8",
    };
    Asset { body, content_type }
}

/// The file at `path` under `/ui/` (`""` is the page).
pub(crate) fn get(path: &str) -> Option<&'static Asset> {
    let path = if path.is_empty() { "index.html" } else { path };
    ASSETS.get(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn names(dir: &Path, ext: &[&str]) -> Vec<String> {
        let mut found = Vec::new();
        let mut dirs = vec![dir.to_owned()];
        while let Some(d) = dirs.pop() {
            for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if ext.iter().any(|e| path.to_string_lossy().ends_with(e)) {
                    let rel = path.strip_prefix(dir).expect("under dir");
                    found.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        found.sort();
        found
    }

    fn listed(table: &[(&str, &[u8])], prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = table
            .iter()
            .map(|(p, _)| p.strip_prefix(prefix).unwrap_or(p).to_owned())
            .filter(|p| p.ends_with("js"))
            .collect();
        v.sort();
        v
    }

    const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

    #[test]
    fn every_client_file_is_embedded() {
        let dir = Path::new(ROOT).join("clients/js/src");
        assert_eq!(listed(CLIENT, "client/"), names(&dir, &[".js"]));
        let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ui/page");
        assert_eq!(listed(PAGE, ""), names(&page, &[".js"]));
    }

    #[test]
    fn no_bare_specifier_is_left() {
        for (path, asset) in ASSETS.iter() {
            let text = String::from_utf8_lossy(&asset.body);
            assert!(!text.contains(MSGPACK_SPECIFIER), "{path}");
        }
        let codec =
            String::from_utf8_lossy(&get("client/codec.js").expect("codec").body).into_owned();
        assert!(codec.contains(MSGPACK_VENDORED));
        assert!(get("vendor/msgpack/index.mjs").is_some());
    }

    /// The vendored files are the installed package's, byte for byte (when
    /// `npm ci` has run; otherwise there is nothing to compare with).
    #[test]
    fn vendored_msgpack_matches_node_modules() {
        let installed = Path::new(ROOT).join("clients/js/node_modules/@msgpack/msgpack/dist.esm");
        if !installed.exists() {
            return;
        }
        for name in names(&installed, &[".mjs"]) {
            let want = std::fs::read(installed.join(&name)).expect("read");
            let got = get(&format!("vendor/msgpack/{name}"));
            assert!(got.is_some_and(|a| a.body == want), "vendor/msgpack/{name}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(
            get("").expect("page").content_type,
            "text/html; charset=utf-8"
        );
        let js = "text/javascript; charset=utf-8";
        assert_eq!(get("app.js").expect("app").content_type, js);
        assert_eq!(
            get("vendor/msgpack/index.mjs").expect("mjs").content_type,
            js
        );
        assert!(get("../Cargo.toml").is_none());
    }
}
