//! Kodi's replies turned into the two key values of docs/kodi.md:
//! [`State`] (`kodi.player.state`) and [`Item`] (`kodi.player.item`).
//!
//! Kodi's answers are read leniently: a field that is missing or of the
//! wrong type becomes nil, never an error, because a partial item is more
//! use than none. Only a reply without the `item` object is refused.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The properties asked of `Player.GetItem`.
pub(crate) const ITEM_PROPERTIES: [&str; 8] = [
    "title",
    "file",
    "showtitle",
    "season",
    "episode",
    "year",
    "duration",
    "streamdetails",
];
/// The InfoLabels asked of `XBMC.GetInfoLabels`.
pub(crate) const LABELS: [&str; 5] = [
    WIDTH_LABEL,
    HEIGHT_LABEL,
    "Player.Process(videofps)",
    "Player.Process(videodar)",
    "VideoPlayer.VideoCodec",
];
const WIDTH_LABEL: &str = "Player.Process(videowidth)";
const HEIGHT_LABEL: &str = "Player.Process(videoheight)";

/// `kodi.player.state`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct State {
    /// `playing`, `paused` or `stopped`.
    pub(crate) state: &'static str,
    /// The playing file; nil when stopped.
    pub(crate) file: Option<String>,
    /// Kodi's speed: 1 playing, 0 paused or stopped.
    pub(crate) speed: i64,
}

impl State {
    /// Nothing plays.
    pub(crate) fn stopped() -> State {
        State {
            state: "stopped",
            file: None,
            speed: 0,
        }
    }

    /// `file` plays at `speed` (0: paused).
    pub(crate) fn at_speed(file: Option<String>, speed: i64) -> State {
        let state = if speed == 0 { "paused" } else { "playing" };
        State { state, file, speed }
    }
}

/// `kodi.player.item`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Item {
    pub(crate) title: String,
    pub(crate) label: String,
    pub(crate) mediatype: String,
    pub(crate) showtitle: Option<String>,
    pub(crate) season: Option<i64>,
    pub(crate) episode: Option<i64>,
    pub(crate) year: Option<i64>,
    pub(crate) duration: Option<i64>,
    pub(crate) file: String,
    pub(crate) video: Option<Video>,
}

/// The `video` map of an item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Video {
    pub(crate) width: Option<i64>,
    pub(crate) height: Option<i64>,
    pub(crate) fps: Option<f64>,
    pub(crate) aspect: Option<f64>,
    pub(crate) codec: Option<String>,
}

/// One entry of `Player.GetActivePlayers`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ActivePlayer {
    /// The id other `Player.*` methods take.
    pub(crate) playerid: i64,
    /// `video`, `audio` or `picture`.
    #[serde(rename = "type")]
    pub(crate) kind: String,
}

/// The player worth publishing: the first video or audio one (a picture
/// slideshow is not playback).
pub(crate) fn pick_player(players: &Value) -> Option<ActivePlayer> {
    let players: Vec<ActivePlayer> = players
        .as_array()?
        .iter()
        .filter_map(|p| ActivePlayer::deserialize(p).ok())
        .collect();
    let pick = |kind: &str| players.iter().find(|p| p.kind == kind).cloned();
    pick("video").or_else(|| pick("audio"))
}

/// The `speed` of a `Player.GetProperties` reply.
pub(crate) fn speed(properties: &Value) -> Option<i64> {
    properties.get("speed").and_then(Value::as_i64)
}

fn text(v: &Value, field: &str) -> Option<String> {
    let s = v.get(field)?.as_str()?;
    (!s.is_empty()).then(|| s.to_owned())
}

fn int(v: &Value, field: &str) -> Option<i64> {
    v.get(field)?.as_i64()
}

/// The leading number of an InfoLabel (`"1,920"`, `"25.000"`, `"1.78"`).
fn label_number(labels: &Value, label: &str) -> Option<f64> {
    let text: String = labels
        .get(label)?
        .as_str()?
        .chars()
        .filter(|c| *c != ',')
        .collect();
    text.trim().parse::<f64>().ok().filter(|n| *n > 0.0)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Builds the item from `Player.GetItem`, `Player.GetProperties` and
/// `XBMC.GetInfoLabels` replies (Null for one that failed). `None` when the
/// GetItem reply has no item.
pub(crate) fn item(
    player: &ActivePlayer,
    item: &Value,
    props: &Value,
    labels: &Value,
) -> Option<Item> {
    let it = item.get("item").filter(|i| i.is_object())?;
    let file = text(it, "file").unwrap_or_default();
    let label = text(it, "label")
        .or_else(|| file.rsplit(['/', '\\']).next().map(str::to_owned))
        .unwrap_or_default();
    let mediatype = text(it, "type")
        .filter(|t| t != "unknown")
        .unwrap_or_else(|| player.kind.clone());
    let video = (player.kind == "video").then(|| video(it, labels));
    Some(Item {
        title: text(it, "title").unwrap_or_else(|| label.clone()),
        label,
        mediatype,
        showtitle: text(it, "showtitle"),
        season: int(it, "season").filter(|n| *n >= 0),
        episode: int(it, "episode").filter(|n| *n >= 0),
        year: int(it, "year").filter(|n| *n > 0),
        duration: total_seconds(props).or_else(|| int(it, "duration").filter(|n| *n > 0)),
        file,
        video,
    })
}

/// `totaltime` in whole seconds (rounded); None when 0 or absent.
fn total_seconds(props: &Value) -> Option<i64> {
    let t = props.get("totaltime")?;
    let part = |f| int(t, f).unwrap_or(0);
    // The parts come from the peer: a huge one must not overflow.
    let ms = part("hours")
        .checked_mul(60)?
        .checked_add(part("minutes"))?
        .checked_mul(60)?
        .checked_add(part("seconds"))?
        .checked_mul(1000)?
        .checked_add(part("milliseconds"))?;
    (ms > 0).then(|| ms.saturating_add(500) / 1000)
}

/// Stream details when Kodi has them (library items), else InfoLabels.
fn video(item: &Value, labels: &Value) -> Video {
    let stream = item
        .get("streamdetails")
        .and_then(|s| s.get("video"))
        .and_then(|v| v.get(0))
        .unwrap_or(&Value::Null);
    let positive = |f| int(stream, f).filter(|n| *n > 0);
    let dar = stream
        .get("aspect")
        .and_then(Value::as_f64)
        .filter(|a| *a > 0.0)
        .or_else(|| label_number(labels, "Player.Process(videodar)"));
    let width = positive("width").or_else(|| label_number(labels, WIDTH_LABEL).map(|w| w as i64));
    let height = positive("height").or_else(|| {
        let padded = label_number(labels, HEIGHT_LABEL)? as i64;
        Some(unpadded_height(width, padded, dar))
    });
    let aspect = dar.or_else(|| Some(width? as f64 / height.filter(|h| *h > 0)? as f64));
    Video {
        width,
        height,
        fps: label_number(labels, "Player.Process(videofps)"),
        aspect: aspect.map(round2),
        codec: text(stream, "codec")
            .or_else(|| text(labels, "VideoPlayer.VideoCodec"))
            .map(|c| c.to_lowercase()),
    }
}

/// `Player.Process(videoheight)` is the decoder's buffer, padded to a
/// multiple of 16 (368 for a 640x360 encode). The encoded height is the one
/// of the 16 heights at or below it whose width/height, rounded like
/// `videodar`, gives the display aspect; of several, the one divisible by
/// the highest power of two (real encodes are), then the closest. Kept as
/// is when nothing fits (non-square pixels, or no aspect).
pub(crate) fn unpadded_height(width: Option<i64>, padded: i64, dar: Option<f64>) -> i64 {
    let (Some(width), Some(dar)) = (width, dar) else {
        return padded;
    };
    let want = round2(dar);
    let fits = |h: &i64| *h > 0 && round2(width as f64 / *h as f64) == want;
    (padded.saturating_sub(15)..=padded)
        .filter(fits)
        .max_by_key(|h| {
            (
                h.trailing_zeros().min(4),
                -(h - (width as f64 / dar) as i64).abs(),
            )
        })
        .unwrap_or(padded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn video_player() -> ActivePlayer {
        ActivePlayer {
            playerid: 1,
            kind: "video".to_owned(),
        }
    }

    #[test]
    fn a_file_outside_the_library_as_kodi_20_reports_it() {
        let got = json!({"item": {"episode": -1, "file": "/tmp/clip.mp4", "label": "clip.mp4", "season": -1,
            "showtitle": "", "streamdetails": {"audio": [], "subtitle": [], "video": []}, "title": "",
            "type": "unknown", "year": 0}});
        let props = json!({"speed": 1, "totaltime": {"hours": 0, "milliseconds": 0, "minutes": 0, "seconds": 5}});
        let labels = json!({"Player.Process(videodar)": "1.78", "Player.Process(videofps)": "25.000",
            "Player.Process(videoheight)": "368", "Player.Process(videowidth)": "640", "VideoPlayer.VideoCodec": "h264"});
        let item = item(&video_player(), &got, &props, &labels).expect("item");
        let expected = json!({"title": "clip.mp4", "label": "clip.mp4", "mediatype": "video",
            "showtitle": null, "season": null, "episode": null, "year": null, "duration": 5,
            "file": "/tmp/clip.mp4",
            "video": {"width": 640, "height": 360, "fps": 25.0, "aspect": 1.78, "codec": "h264"}});
        assert_eq!(serde_json::to_value(&item).expect("json"), expected);
    }

    #[test]
    fn library_stream_details_win_and_wrong_types_become_nil() {
        let got = json!({"item": {"file": "/tv/s01e02.mkv", "label": "Pilot", "title": "Pilot", "type": "episode",
            "showtitle": "Show", "season": 1, "episode": "two", "year": 2001, "duration": 1500,
            "streamdetails": {"video": [{"width": 1920, "height": 1080, "aspect": 1.7777, "codec": "HEVC"}]}}});
        let item = item(&video_player(), &got, &Value::Null, &json!([])).expect("item");
        assert_eq!(
            (item.season, item.episode, item.year, item.duration),
            (Some(1), None, Some(2001), Some(1500))
        );
        let v = item.video.expect("video");
        assert_eq!(
            (v.width, v.height, v.aspect, v.codec.as_deref(), v.fps),
            (Some(1920), Some(1080), Some(1.78), Some("hevc"), None)
        );
        assert!(super::item(
            &video_player(),
            &json!({"item": 3}),
            &Value::Null,
            &Value::Null
        )
        .is_none());
    }

    #[test]
    fn a_total_time_too_big_to_add_up_is_unknown() {
        let huge = serde_json::json!({"totaltime": {"hours": i64::MAX, "minutes": 1}});
        assert_eq!(total_seconds(&huge), None);
        let clip = serde_json::json!({"totaltime": {"seconds": 4, "milliseconds": 600}});
        assert_eq!(total_seconds(&clip), Some(5));
    }

    #[test]
    fn padded_heights_are_unpadded_only_when_the_aspect_says_so() {
        assert_eq!(unpadded_height(Some(640), 368, Some(1.78)), 360);
        assert_eq!(unpadded_height(Some(1920), 1088, Some(1.78)), 1080);
        assert_eq!(unpadded_height(Some(1280), 720, Some(1.78)), 720);
        assert_eq!(unpadded_height(Some(720), 576, Some(1.78)), 576); // anamorphic
        assert_eq!(unpadded_height(None, 368, Some(1.78)), 368);
    }

    #[test]
    fn audio_has_no_video_and_pictures_are_not_players() {
        let players = json!([{"playerid": 2, "type": "picture"}, {"playerid": 0, "playertype": "internal", "type": "audio"}]);
        let p = pick_player(&players).expect("audio");
        assert_eq!(p.playerid, 0);
        let got =
            json!({"item": {"file": "/m/a.flac", "label": "a.flac", "title": "A", "type": "song"}});
        let item = item(&p, &got, &Value::Null, &Value::Null).expect("item");
        assert_eq!((item.mediatype.as_str(), item.video), ("song", None));
        assert!(pick_player(&json!([{"playerid": "x"}])).is_none());
    }
}
