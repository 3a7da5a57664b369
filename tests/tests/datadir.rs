//! The data directory is never silently wrong: it and its files belong to
//! the user who runs the server and are closed to others, and a token
//! file that is too short or a symlink is refused with a message that
//! says how to fix it (docs/security.md). The damaged and empty data file
//! cases are in `bus/server/tests/durability.rs`.

use ipcbus::Config;
use ipcbus_tests::{start_error, test_config, TestServer};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn config(dir: &Path) -> Config {
    Config {
        data_dir: Some(dir.to_owned()),
        ..test_config()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_data_directory_open_to_others_is_closed_and_the_data_file_is_0600() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    assert_eq!(start_error(config(&dir)), None);
    assert_eq!(mode(&dir), 0o700);
    let data_file = dir.join("ipcbus.redb");
    assert_eq!(mode(&data_file), 0o600, "a new data file is the owner's");
    std::fs::set_permissions(&data_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_eq!(start_error(config(&dir)), None);
    assert_eq!(mode(&data_file), 0o600, "an old data file is closed");
}

#[test]
fn a_data_directory_of_another_user_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("planted");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("token"), "0123456789abcdef0123\n").expect("planted token");
    // Root can give it away; anyone else can use a directory root owns.
    let other = if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).expect("chown");
        dir
    } else {
        Path::new("/").to_owned()
    };
    let err = start_error(config(&other)).expect("refused");
    assert!(
        err.contains("not to this user") && err.contains("chown"),
        "{err}"
    );
}

#[test]
fn a_short_token_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::write(tmp.path().join("token"), "x\n").expect("token");
    let err = start_error(config(tmp.path())).expect("refused");
    assert!(
        err.contains("a token of 1 characters") && err.contains("Delete the file"),
        "{err}"
    );
}

#[test]
fn a_symlinked_token_file_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let shared = tmp.path().join("world-readable");
    std::fs::write(&shared, "0123456789abcdef0123456789abcdef\n").expect("token");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).expect("mkdir");
    std::os::unix::fs::symlink(&shared, dir.join("token")).expect("symlink");
    let err = start_error(config(&dir)).expect("refused");
    assert!(err.contains("is a symlink"), "{err}");
}

#[tokio::test]
async fn a_good_token_file_is_used_and_closed_to_others() {
    let tmp = tempfile::tempdir().expect("tmp");
    let token = tmp.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").expect("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let server = TestServer::with_config(config(tmp.path()));
    // The token file was read, so the server runs with that token.
    let (status, _) = server.http_get("/v1/keys").await;
    assert_eq!(status, 200);
    assert_eq!(server.token(), Some("0123456789abcdef0123456789abcdef"));
    assert_eq!(mode(&token), 0o600);
}

#[test]
fn a_data_file_not_our_own_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    assert_eq!(start_error(config(tmp.path())), None, "first start");
    let data_file = tmp.path().join("ipcbus.redb");
    let err = if rustix::process::geteuid().is_root() {
        // Another user's file in our directory: it could be read by them.
        std::os::unix::fs::chown(&data_file, Some(65534), Some(65534)).expect("chown");
        let err = start_error(config(tmp.path())).expect("refused");
        assert!(err.contains("not to this user"), "{err}");
        std::os::unix::fs::chown(&data_file, Some(0), Some(0)).expect("chown back");
        err
    } else {
        String::new()
    };
    // A link to a file elsewhere, whoever runs the test.
    let elsewhere = tmp.path().join("elsewhere.redb");
    std::fs::rename(&data_file, &elsewhere).expect("move");
    std::os::unix::fs::symlink(&elsewhere, &data_file).expect("symlink");
    let link = start_error(config(tmp.path())).expect("refused");
    assert!(link.contains("is a symlink"), "{link} (before: {err})");
}
