//! One connection's work: read the player when connected, then follow
//! Kodi's `Player.*` notifications and keep the two keys in step.

use super::player::{self, ActivePlayer, State};
use super::publish::Publisher;
use super::rpc::{Notification, Rpc, RpcError};
use super::{ITEM_KEY, STATE_KEY};
use serde::Deserialize;
use serde_json::{json, Value};

/// The notifications the bridge acts on; others are ignored.
const FOLLOWED: [&str; 7] = [
    "Player.OnPlay",
    "Player.OnAVStart",
    "Player.OnAVChange",
    "Player.OnPause",
    "Player.OnResume",
    "Player.OnSpeedChanged",
    "Player.OnStop",
];

/// `params` of a `Player.On*` notification, as far as the bridge reads it.
#[derive(Debug, Deserialize)]
struct Params {
    data: Data,
}

#[derive(Debug, Deserialize)]
struct Data {
    player: Option<PlayerRef>,
}

#[derive(Debug, Deserialize)]
struct PlayerRef {
    playerid: i64,
    speed: Option<i64>,
}

fn logged(method: &str, result: Result<(), RpcError>) {
    match result {
        Ok(()) | Err(RpcError::Closed) => {}
        Err(e) => tracing::warn!(method, "could not read the player from Kodi: {e}"),
    }
}

/// The bridge's view of one connection.
pub(crate) struct Sync<'a> {
    rpc: &'a Rpc,
    out: &'a mut Publisher,
    /// The file of the playback last published, for pause and resume.
    file: Option<String>,
    /// The item of the current playback is published: set by a read after
    /// `OnAVStart` (or on connect), cleared by `OnPlay` and `OnStop`.
    started: bool,
}

impl<'a> Sync<'a> {
    pub(crate) fn new(rpc: &'a Rpc, out: &'a mut Publisher) -> Sync<'a> {
        Sync {
            rpc,
            out,
            file: None,
            started: false,
        }
    }

    /// Reads what plays now (`Player.GetActivePlayers`) and publishes it.
    pub(crate) async fn resync(&mut self) -> Result<(), RpcError> {
        let players = self.rpc.call("Player.GetActivePlayers", json!({})).await?;
        match player::pick_player(&players) {
            Some(p) => self.refresh(&p, None).await,
            None => {
                self.stopped().await;
                Ok(())
            }
        }
    }

    /// Publishes "stopped" and deletes the item.
    pub(crate) async fn stopped(&mut self) {
        self.file = None;
        self.started = false;
        self.out.set(STATE_KEY, &State::stopped()).await;
        self.out.del(ITEM_KEY).await;
    }

    /// Applies one notification. Failures are logged; none ends the connection.
    pub(crate) async fn handle(&mut self, n: Notification) {
        if self.rpc.take_lost() {
            let result = self.resync().await;
            logged(&n.method, result);
        }
        let method = n.method.as_str();
        tracing::debug!(method, "Kodi notification");
        if !FOLLOWED.contains(&method) {
            return;
        }
        if method == "Player.OnStop" {
            return self.stopped().await;
        }
        let player = match Params::deserialize(&n.params) {
            Ok(Params {
                data: Data { player: Some(p) },
            }) => p,
            Ok(_) => return tracing::warn!(method, "skipped a Kodi notification without a player"),
            Err(e) => return tracing::warn!(method, "skipped a malformed Kodi notification: {e}"),
        };
        let result = match method {
            "Player.OnAVStart" => self.refresh_id(player.playerid, player.speed).await,
            // Kodi's InfoLabels still describe the previous video at this
            // point (seen with Kodi 20), so the read waits for `OnAVStart`,
            // which follows within a second.
            "Player.OnPlay" => {
                self.started = false;
                Ok(())
            }
            // Streams changed (another audio track, a new resolution).
            "Player.OnAVChange" if self.started => {
                self.refresh_id(player.playerid, player.speed).await
            }
            "Player.OnPause" => self.speed(0).await,
            "Player.OnResume" => {
                self.speed(player.speed.filter(|s| *s != 0).unwrap_or(1))
                    .await
            }
            "Player.OnSpeedChanged" => match player.speed {
                Some(s) => self.speed(s).await,
                None => Ok(()),
            },
            _ => Ok(()),
        };
        logged(method, result);
    }

    /// A pause, resume or speed change of what plays.
    async fn speed(&mut self, speed: i64) -> Result<(), RpcError> {
        match &self.file {
            Some(file) => {
                let state = State::at_speed(Some(file.clone()), speed);
                self.out.set(STATE_KEY, &state).await;
                Ok(())
            }
            // Nothing known plays (its start was missed): read it all.
            None => self.resync().await,
        }
    }

    async fn refresh_id(&mut self, id: i64, speed: Option<i64>) -> Result<(), RpcError> {
        let players = self.rpc.call("Player.GetActivePlayers", json!({})).await?;
        let named = players
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| ActivePlayer::deserialize(p).ok())
            .find(|p| p.playerid == id && (p.kind == "video" || p.kind == "audio"));
        match named.or_else(|| player::pick_player(&players)) {
            Some(p) => self.refresh(&p, speed).await,
            // Stopped again before we asked.
            None => {
                self.stopped().await;
                Ok(())
            }
        }
    }

    /// Reads the item, its properties and the video InfoLabels together,
    /// then writes the item and the state.
    async fn refresh(&mut self, p: &ActivePlayer, speed: Option<i64>) -> Result<(), RpcError> {
        let id = p.playerid;
        let video = p.kind == "video";
        let get_item = self.rpc.call(
            "Player.GetItem",
            json!({"playerid": id, "properties": player::ITEM_PROPERTIES}),
        );
        let get_props = self.rpc.call(
            "Player.GetProperties",
            json!({"playerid": id, "properties": ["totaltime", "speed"]}),
        );
        let get_labels = async {
            if video {
                self.rpc
                    .call("XBMC.GetInfoLabels", json!({"labels": player::LABELS}))
                    .await
            } else {
                Ok(Value::Null)
            }
        };
        let (item, props, labels) = tokio::join!(get_item, get_props, get_labels);
        tracing::debug!(?labels, "read the player");
        let item = item?;
        // The item is worth publishing without these; say why fields are nil.
        let props = props.unwrap_or_else(|e| {
            tracing::warn!("Player.GetProperties failed: {e}");
            Value::Null
        });
        let labels = labels.unwrap_or_else(|e| {
            tracing::warn!("XBMC.GetInfoLabels failed: {e}");
            Value::Null
        });
        let Some(item) = player::item(p, &item, &props, &labels) else {
            tracing::warn!("skipped a Player.GetItem reply without an item");
            return Ok(());
        };
        let speed = player::speed(&props).or(speed).unwrap_or(1);
        let state = State::at_speed(Some(item.file.clone()), speed);
        self.out.set(ITEM_KEY, &item).await;
        self.out.set(STATE_KEY, &state).await;
        self.file = Some(item.file);
        self.started = true;
        Ok(())
    }
}
