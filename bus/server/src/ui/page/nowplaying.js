// The now-playing card: shown while kodi.player.* keys exist (docs/kodi.md has their shape).

/** Follows kodi.player.state and kodi.player.item into `card`. */
export async function nowPlaying(bus, card) {
  const mirror = await bus.watch("kodi.player.*");
  await mirror.synced();
  for (;;) {
    draw(card, mirror.get("kodi.player.state"), mirror.get("kodi.player.item"));
    await mirror.changed();
  }
}

function draw(card, state, item) {
  if (!state && !item) {
    card.hidden = true;
    return;
  }
  card.hidden = false;
  const line = (className, text) => Object.assign(document.createElement("p"), { className, textContent: text });
  const title = item?.showtitle ? `${item.showtitle} S${item.season ?? "?"}E${item.episode ?? "?"} · ${item.title}` : item?.title ?? "";
  const video = item?.video ? `${item.video.width}×${item.video.height} ${item.video.codec ?? ""}` : "";
  const duration = Number.isFinite(item?.duration) ? `${Math.floor(item.duration / 60)}:${String(item.duration % 60).padStart(2, "0")}` : "";
  card.replaceChildren(
    Object.assign(document.createElement("h2"), { textContent: "Now playing (Kodi)" }),
    line("np-state", String(state?.state ?? "unknown")),
    line("np-title", title || String(state?.file ?? "")),
    line("muted", [item?.mediatype, item?.year, duration, video].filter(Boolean).join(" · ")),
  );
}
